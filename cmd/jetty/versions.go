package main

import "github.com/jettythunder/jetty/protocol"

// listedAsset is an asset as `jetty ls --json` prints it: the server's
// fields, and whether a newer upload of the same entry replaced it.
type listedAsset struct {
	protocol.Asset
	// OlderVersion: a newer file of the same name (and cache key and
	// pipeline) with other content is listed before it.
	OlderVersion bool `json:"older_version,omitempty"`
}

// entryKey is what makes uploads one entry: the stored name, the cache
// key and the pipeline. Its versions are its uploads with other content.
type entryKey struct{ name, cacheKey, pipeline string }

// markVersions flags the older versions among assets listed newest first:
// an asset whose entry appeared earlier in the list with another SHA-256.
// An upload of the same content under the same entry is the same asset
// (the server returns it instead of adding a row), so rows of one entry
// differ in content.
func markVersions(assets []protocol.Asset) []listedAsset {
	newest := map[entryKey]string{}
	out := make([]listedAsset, len(assets))
	for i, a := range assets {
		k := entryKey{a.Filename, a.CacheKey, a.PipelineID}
		h, seen := newest[k]
		if !seen {
			newest[k] = a.Hash
		}
		out[i] = listedAsset{Asset: a, OlderVersion: seen && h != a.Hash}
	}
	return out
}

// storedBytes is what the listed files take in storage: each content
// (content id, else SHA-256) counted once, as the server keeps it once
// per account and counts it once in the quota's used storage. For the
// whole listing it equals `jetty quota`'s used figure.
func storedBytes(assets []protocol.Asset) int64 {
	seen := map[string]bool{}
	var n int64
	for _, a := range assets {
		id := a.ContentID
		if id == "" {
			id = a.Hash
		}
		if !seen[id] {
			seen[id] = true
			n += a.Size
		}
	}
	return n
}
