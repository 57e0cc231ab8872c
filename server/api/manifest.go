package api

import (
	"github.com/jettythunder/jetty/protocol"
	"github.com/jettythunder/jetty/server"
)

func badManifest(format string, args ...any) error {
	return server.Errorf(server.EInvalidManifest, "invalid manifest: "+format, args...)
}

// validateManifest checks m against the protocol's rules.
func validateManifest(m *protocol.Manifest) error {
	if err := m.Validate(); err != nil {
		return server.Errorf(server.EInvalidManifest, "%v", err)
	}
	return nil
}
