package fsblob

// SetHook makes the store call h at each step of an assembly ("recorded",
// "appended" and "released" with the part's position from 1, "meta",
// "published"); an error stops the assembly there, as a crash would.
func SetHook(s *Store, h func(step string, part int) error) { s.hook = h }

// DisableClone makes the store copy parts instead of cloning them.
func DisableClone(s *Store) { s.noClone.Store(true) }

// CloneDisabled reports whether the store stopped trying reflink clones.
func CloneDisabled(s *Store) bool { return s.noClone.Load() }

// HashedParts is how many parts of in-place upload id the store has
// hashed ahead of its completion.
func HashedParts(s *Store, id string) int {
	ph := s.prefixOf(id, false)
	if ph == nil {
		return 0
	}
	ph.mu.Lock()
	defer ph.mu.Unlock()
	return len(ph.parts)
}
