package agent_test

import (
	"sync"

	"golang.org/x/sys/unix"
)

func syscallMkfifo(path string) error { return unix.Mkfifo(path, 0o644) }

var (
	buildOnce  sync.Once
	builtAgent string
	buildErr   error
)
