// Command pause is the pod sandbox process for the test node: it sleeps until
// SIGINT or SIGTERM and, as PID 1 of a shared PID namespace, reaps orphans.
// Built with CGO_ENABLED=0 into a FROM-scratch image by scripts/k8s-testenv.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
