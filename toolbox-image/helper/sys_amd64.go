package main

// renameat2(2) on linux/amd64 (the frozen syscall package predates it).
const sysRenameat2 = 316
