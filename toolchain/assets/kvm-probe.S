# Kiln's KVM probe program: proves an accelerator runs Kiln's kernel correctly.
# Runs in ring 3 as the image's program; prints "kiln-probe: ok" and exits 0 only when SSE
# (and, where the kernel enabled it, AVX) state survives system calls, a page fault and a
# sleep that the kernel ends with a timer interrupt; exits 1 otherwise.
# Assembled flat (no relocations): the text is loaded at 0x400000 + 0xb0, the bss page at
# 0x402000 is demand-paged (its first write is a page fault).
.intel_syntax noprefix
.text
.globl _start
_start:
    mov eax, 0x3fc00000          # 1.5f
    movd xmm0, eax
    movaps xmm1, xmm0
    addss xmm1, xmm0             # xmm1 = 3.0f, checked at the end
    mov r12d, 0                  # r12 = 1 when AVX state is in use
    mov eax, 1
    cpuid
    bt ecx, 27                   # OSXSAVE: the kernel enabled XSAVE
    jnc 1f
    bt ecx, 28                   # AVX
    jnc 1f
    xor ecx, ecx
    xgetbv
    and eax, 6
    cmp eax, 6                   # XCR0 has SSE and AVX state
    jne 1f
    vinsertf128 ymm2, ymm1, xmm1, 1   # ymm2 upper half = 3.0f
    mov r12d, 1
1:
    mov ebx, 0x402000
    mov qword ptr [rbx], 0x4b494c4e   # first write to a fresh page: a page fault
    lea rdi, [rip + sleep_for]
    xor esi, esi
    mov eax, 35                  # nanosleep: the kernel halts until its timer interrupt
    syscall
    test rax, rax
    jnz 2f
    movd eax, xmm1
    cmp eax, 0x40400000
    jne 2f
    cmp qword ptr [rbx], 0x4b494c4e
    jne 2f
    test r12d, r12d
    jz 3f
    vextractf128 xmm3, ymm2, 1
    movd eax, xmm3
    cmp eax, 0x40400000
    jne 2f
3:
    mov eax, 1                   # write(1, line, len)
    mov edi, 1
    lea rsi, [rip + line]
    mov edx, line_end - line
    syscall
    cmp rax, line_end - line
    jne 2f
    mov eax, 231                 # exit_group(0)
    xor edi, edi
    syscall
2:
    mov eax, 231                 # exit_group(1)
    mov edi, 1
    syscall
    ud2
.balign 8
sleep_for:
    .quad 0, 2000000             # 2 ms
line:
    .ascii "kiln-probe: ok\n"
line_end:
