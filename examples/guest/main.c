/*
 * cvmlaunch example guest: hash every range the launcher lists and report on COM1.
 *
 * Report grammar (one line each, '\n' terminated; parsed by cvmlaunch/launcher/report.py):
 *   cvmlaunch-guest <free text>              informational lines
 *   range <i> 0x<gpa>+0x<size> sha384 <96 lowercase hex digits>
 *   range <i> 0x<gpa>+0x<size> unreachable   (not addressable without paging: beyond 4 GiB)
 *   end <count>
 * guest_main's return value is written to the debug-exit port (0 = every range was hashed).
 */
#include "guest.h"

static inline void outb(u16 port, u8 value)
{
	__asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

static void put_char(char c) { outb(SERIAL_PORT, (u8)c); }

static void put_str(const char *s)
{
	while (*s)
		put_char(*s++);
}

static void put_hex(u64 v)
{
	static const char digits[] = "0123456789abcdef";
	char buf[16];
	int n = 0;
	do {
		buf[n++] = digits[v & 15];
		v >>= 4;
	} while (v);
	put_str("0x");
	while (n)
		put_char(buf[--n]);
}

static void put_dec(u32 v)
{
	char buf[10];
	int n = 0;
	do {
		buf[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		put_char(buf[--n]);
}

static void put_bytes_hex(const u8 *p, int n)
{
	static const char digits[] = "0123456789abcdef";
	for (int i = 0; i < n; i++) {
		put_char(digits[p[i] >> 4]);
		put_char(digits[p[i] & 15]);
	}
}

/* Print a NUL-terminated guest string, at most `max` bytes, with non-printables as '?'. */
static void put_guest_string(u64 paddr, u32 max)
{
	if (paddr == 0 || paddr >= 0x100000000ULL) {
		put_str("(none)");
		return;
	}
	const char *s = (const char *)(u32)paddr;
	for (u32 i = 0; i < max && s[i]; i++)
		put_char(s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?');
}

static void report_start_info(const struct hvm_start_info *si)
{
	if (si->magic != HVM_START_MAGIC) {
		put_str("cvmlaunch-guest no PVH start_info\n");
		return;
	}
	put_str("cvmlaunch-guest cmdline \"");
	put_guest_string(si->cmdline_paddr, 256);
	put_str("\"\n");
	if (si->nr_modules && si->modlist_paddr < 0x100000000ULL) {
		const struct hvm_modlist_entry *m = (const void *)(u32)si->modlist_paddr;
		for (u32 i = 0; i < si->nr_modules && i < 8; i++) {
			put_str("cvmlaunch-guest module ");
			put_dec(i);
			put_char(' ');
			put_hex(m[i].paddr);
			put_char('+');
			put_hex(m[i].size);
			put_char('\n');
		}
	}
	if (si->version >= 1 && si->memmap_paddr && si->memmap_paddr < 0x100000000ULL) {
		const struct hvm_memmap_table_entry *e = (const void *)(u32)si->memmap_paddr;
		for (u32 i = 0; i < si->memmap_entries && i < 16; i++) {
			put_str("cvmlaunch-guest memory ");
			put_hex(e[i].addr);
			put_char('+');
			put_hex(e[i].size);
			put_str(" type ");
			put_dec(e[i].type);
			put_char('\n');
		}
	}
}

static int magic_ok(const char *m)
{
	static const char want[8] = RANGE_TABLE_MAGIC;
	for (int i = 0; i < 8; i++)
		if (m[i] != want[i])
			return 0;
	return 1;
}

u32 guest_main(const struct hvm_start_info *si)
{
	put_str("cvmlaunch-guest hello\n");
	report_start_info(si);

	const struct range_table *t = (const void *)RANGE_TABLE_GPA;
	if (!magic_ok(t->magic) || t->version != RANGE_TABLE_VERSION ||
	    t->count > (4096 - 16) / sizeof(struct range_entry)) {
		put_str("cvmlaunch-guest bad range table\n");
		put_str("end 0\n");
		return 2;
	}
	u32 status = 0;
	for (u32 i = 0; i < t->count; i++) {
		u64 gpa = t->entry[i].gpa, size = t->entry[i].size;
		put_str("range ");
		put_dec(i);
		put_char(' ');
		put_hex(gpa);
		put_char('+');
		put_hex(size);
		if (gpa >= 0x100000000ULL || size >= 0x100000000ULL - gpa) {
			put_str(" unreachable\n");
			status = 1;
			continue;
		}
		u8 digest[48];
		sha384_range((const u8 *)(u32)gpa, (u32)size, digest);
		put_str(" sha384 ");
		put_bytes_hex(digest, 48);
		put_char('\n');
	}
	put_str("end ");
	put_dec(t->count);
	put_char('\n');
	return status;
}
