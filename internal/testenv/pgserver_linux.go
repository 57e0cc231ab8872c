package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
)

// pgUser is the account a private PostgreSQL runs as: the postgres user
// when this process is root (PostgreSQL refuses to run as root), nil (this
// process's own) otherwise.
func pgUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and there is no postgres user to run PostgreSQL as: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// pgOwn gives dir to the user PostgreSQL runs as.
func pgOwn(dir string) error {
	cred, err := pgUser()
	if err != nil || cred == nil {
		return err
	}
	return os.Chown(dir, int(cred.Uid), int(cred.Gid))
}

// pgRunAs makes cmd run as the user PostgreSQL runs as (keeping any
// Pdeathsig already set: Go sets it after changing credentials).
func pgRunAs(cmd *exec.Cmd) error {
	cred, err := pgUser()
	if err != nil || cred == nil {
		return err
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = cred
	return nil
}
