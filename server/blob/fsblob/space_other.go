//go:build !linux && !darwin && !windows

package fsblob

import (
	"errors"
	"syscall"
)

func isNoSpace(err error) bool { return errors.Is(err, syscall.ENOSPC) }

func statSpace(dir string) (free, total int64, err error) { return 0, 0, errors.ErrUnsupported }
