// Package keychain stores the command line's credentials: an API key and
// secret per server.
//
// Credentials go to the OS keychain through go-keyring (Secret Service on
// Linux, Keychain on macOS, Credential Manager on Windows) under service
// "jetty", user = the normalised server URL, value "KEY:SECRET". Every
// keychain call is bounded by a timeout (DefaultTimeout): on a headless
// machine a D-Bus call to a Secret Service that is not there can otherwise
// hang.
//
// A plain file, credentials.json (mode 0600, in a 0700 directory, written
// atomically), is used only when the caller asks for it (insecure storage)
// or when the keychain is unavailable, and then always with a warning that
// names the file and why. config.json in the same directory records the
// server last logged in to; it holds nothing secret.
//
// Store.Save, Store.Load and Store.Delete say where the credentials went,
// came from or were removed from as a Source: its Kind (keychain, file)
// and, for the file, its Path.
//
// The directory is $XDG_CONFIG_HOME/jetty, or ~/.config/jetty.
//
// Environment overrides (JETTY_SERVER, JETTY_API_KEY, JETTY_API_SECRET)
// come before anything stored here; the command line applies them.
package keychain
