package fsblob

import (
	"context"
	"errors"
	"fmt"

	"github.com/jettythunder/jetty/server/blob"
)

var _ blob.SpaceReporter = (*Store)(nil)

// Space reports the room left on the filesystem that holds the store:
// the bytes the server may still write and the filesystem's size.
func (s *Store) Space(ctx context.Context) (blob.Space, error) {
	free, total, err := statSpace(s.dir)
	if err != nil {
		return blob.Space{}, fmt.Errorf("fsblob: statfs %s: %w", s.dir, err)
	}
	return blob.Space{Free: free, Total: total}, nil
}

// noSpace makes an error that says the filesystem is full (ENOSPC, or
// EDQUOT: a disk quota) match blob.ErrNoSpace, keeping its own chain.
func noSpace(err error) error {
	if err != nil && isNoSpace(err) && !errors.Is(err, blob.ErrNoSpace) {
		return fmt.Errorf("%w: %w", blob.ErrNoSpace, err)
	}
	return err
}
