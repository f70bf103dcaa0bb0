/* SPDX-License-Identifier: GPL-2.0 */
/* A library linked with -z execstack: dlopen()ing it makes glibc turn the
 * stack executable (_dl_make_stack_executable: mprotect(..., PROT_READ |
 * PROT_WRITE | PROT_EXEC | PROT_GROWSDOWN)). */
int execstack_lib_answer(void) { return 42; }
