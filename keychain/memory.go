package keychain

import "sync"

// Memory is a Keyring kept in memory: for tests, and for programs that
// embed the command line and keep credentials themselves.
type Memory struct {
	mu sync.Mutex
	m  map[string]string
}

// NewMemory returns an empty in-memory keyring.
func NewMemory() *Memory { return &Memory{m: map[string]string{}} }

func memKey(service, user string) string { return service + "\x00" + user }

// Get returns the secret stored for service and user, or ErrNotFound.
func (k *Memory) Get(service, user string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[memKey(service, user)]
	if !ok {
		return "", ErrNotFound
	}
	return v, nil
}

// Set stores secret for service and user.
func (k *Memory) Set(service, user, secret string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.m[memKey(service, user)] = secret
	return nil
}

// Delete removes the secret of service and user, or fails with ErrNotFound.
func (k *Memory) Delete(service, user string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.m[memKey(service, user)]; !ok {
		return ErrNotFound
	}
	delete(k.m, memKey(service, user))
	return nil
}

// Len is the number of stored secrets.
func (k *Memory) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.m)
}
