/*
 * PVH entry of the cvmlaunch example guest.
 *
 * The Xen PVH boot ABI (xen/include/public/arch-x86/hvm/start_info.h, and the note type
 * XEN_ELFNOTE_PHYS32_ENTRY = 18 of xen/include/public/elfnote.h) enters here in 32-bit
 * protected mode, paging off, flat CS/DS/ES/SS, interrupts off, %ebx = struct hvm_start_info.
 * cvmlaunch starts application processors here too, with %ebx = 0: they park at once.
 *
 * The image has no writable section: the stack lives below STACK_TOP, in RAM the launcher
 * leaves unpopulated, so hashing the image's own pages gives what the launcher put there.
 */
#define STACK_TOP 0x80000
#define DEBUG_EXIT_PORT 0xf4

	.section .note.Xen, "a", @note
	.balign 4
	.long 4			/* namesz: "Xen\0" */
	.long 4			/* descsz */
	.long 18		/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long pvh_start

	.section .text.start, "ax", @progbits
	.code32
	.globl pvh_start
pvh_start:
	cli
	cld
	lgdt gdt_descriptor
	ljmp $0x08, $1f
1:	movl $0x10, %eax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw %ax, %fs
	movw %ax, %gs
	testl %ebx, %ebx
	jz park			/* an application processor: nothing to do */
	movl $STACK_TOP, %esp
	pushl %ebx
	call guest_main
	outb %al, $DEBUG_EXIT_PORT
park:
	cli
	hlt
	jmp park

	.section .rodata.gdt, "a", @progbits
	.balign 8
gdt:
	.quad 0
	/*
	 * The accessed bit (type bit 0) is preset: loading a selector would otherwise make the
	 * CPU set it, writing into this read-only, hashed page and changing its digest.
	 */
	.quad 0x00cf9b000000ffff	/* 0x08: flat 32-bit code */
	.quad 0x00cf93000000ffff	/* 0x10: flat data */
gdt_end:
	.balign 2
gdt_descriptor:
	.word gdt_end - gdt - 1
	.long gdt
