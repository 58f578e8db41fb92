/*
 * cvmlaunch example guest: the contract with the launcher.
 *
 * The launcher writes a range table (cvmlaunch/plan/pvh.py) at RANGE_TABLE_GPA. The guest
 * hashes every listed guest-physical range with SHA-384 (FIPS 180-4) and reports one line per
 * range on the serial port (COM1, 0x3f8), then writes its exit status to the debug-exit port
 * and halts.
 * The Python side of this contract is cvmlaunch/plan/pvh.py (RANGE_TABLE_GPA, the table struct)
 * and cvmlaunch/launcher/report.py (the report grammar); keep them in step.
 */
#ifndef CVMLAUNCH_GUEST_H
#define CVMLAUNCH_GUEST_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define RANGE_TABLE_GPA 0x1000u
#define RANGE_TABLE_MAGIC "CVMLRNG\0"
#define RANGE_TABLE_VERSION 1u

/* The range table: 16-byte header, then `count` 16-byte entries (all little-endian). */
struct range_entry {
	u64 gpa;
	u64 size;
};

struct range_table {
	char magic[8];
	u32 version;
	u32 count;
	struct range_entry entry[];
};

/* PVH boot ABI: struct hvm_start_info (xen/include/public/arch-x86/hvm/start_info.h). */
#define HVM_START_MAGIC 0x336ec578u
struct hvm_start_info {
	u32 magic;
	u32 version;
	u32 flags;
	u32 nr_modules;
	u64 modlist_paddr;
	u64 cmdline_paddr;
	u64 rsdp_paddr;
	u64 memmap_paddr;
	u32 memmap_entries;
	u32 reserved;
};

struct hvm_modlist_entry {
	u64 paddr;
	u64 size;
	u64 cmdline_paddr;
	u64 reserved;
};

struct hvm_memmap_table_entry {
	u64 addr;
	u64 size;
	u32 type;
	u32 reserved;
};

#define SERIAL_PORT 0x3f8
#define DEBUG_EXIT_PORT 0xf4

/* sha384.c */
struct sha512_state {
	u64 h[8];
};
void sha384_range(const u8 *data, u32 size, u8 out[48]);

#endif
