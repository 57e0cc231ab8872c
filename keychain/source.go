package keychain

// SourceKind is where credentials are kept: the OS keychain, the plain
// file, or (for the command line, which reads them there before asking a
// Store) the environment.
type SourceKind int

const (
	SourceKeychain SourceKind = iota + 1 // the OS keychain
	SourceFile                           // the plain file credentials.json (Source.Path)
	SourceEnv                            // JETTY_API_KEY and JETTY_API_SECRET; never returned by a Store
)

// String is the kind's name, as `jetty whoami --json` prints it
// (credentials_source): "keychain", "file" or "environment".
func (k SourceKind) String() string {
	switch k {
	case SourceKeychain:
		return "keychain"
	case SourceFile:
		return "file"
	case SourceEnv:
		return "environment"
	}
	return ""
}

// Source says where credentials were stored, found or removed. Store.Save,
// Store.Load and Store.Delete return it; nothing needs to parse it.
type Source struct {
	Kind SourceKind
	Path string // the file, for SourceFile; "" otherwise
}

// String says where in the words the command line prints: "the OS
// keychain", "the plain file PATH", "the environment (JETTY_API_KEY,
// JETTY_API_SECRET)".
func (s Source) String() string {
	switch s.Kind {
	case SourceKeychain:
		return "the OS keychain"
	case SourceFile:
		return "the plain file " + s.Path
	case SourceEnv:
		return "the environment (JETTY_API_KEY, JETTY_API_SECRET)"
	}
	return ""
}

func keychainSource() Source        { return Source{Kind: SourceKeychain} }
func fileSource(path string) Source { return Source{Kind: SourceFile, Path: path} }
