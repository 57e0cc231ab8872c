package api

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"time"

	"github.com/jettythunder/jetty/server"
)

// The fields of a multipart upload (seed 002: `-F file=@… -F cache_key=…`).
// Any other field is refused, and so is a field sent twice: a client that
// misspells a field learns it at once instead of finding its asset without
// the value. pipeline_id is another name of agentcache_pipeline_id (the
// list filter's name); sending both is sending the field twice.
const (
	fieldFile       = "file"
	fieldCacheKey   = "cache_key"
	fieldTTL        = "ttl"
	fieldPipelineID = "agentcache_pipeline_id"
	fieldPipeline   = "pipeline_id"
)

// maxFieldLen bounds the value of a field (the longest is a cache key):
// a field is read into memory, so a longer one is refused unread.
const maxFieldLen = maxCacheKeyLen

// formFields are the fields of a multipart upload read so far, checked
// one by one as they arrive.
type formFields struct {
	seen       map[string]bool // canonical names
	cacheKey   string
	pipelineID string
	ttl        time.Duration
}

// shortName is a field name fit for an error message.
func shortName(name string) string {
	if len(name) > 64 {
		name = name[:64] + "…"
	}
	return fmt.Sprintf("%q", name)
}

// read reads one field part and checks its value. An unknown field, one
// sent twice (a second file among them) or a bad value is EInvalid naming
// the field.
func (f *formFields) read(part *multipart.Part) error {
	name := part.FormName()
	canon := name
	if name == fieldPipeline {
		canon = fieldPipelineID
	}
	switch canon {
	case fieldFile, fieldCacheKey, fieldTTL, fieldPipelineID:
	case "":
		return server.Errorf(server.EInvalid, "multipart part without a field name: every part needs Content-Disposition: form-data; name=\"…\"")
	default:
		return server.Errorf(server.EInvalid, "unknown form field %s: an upload takes %q and optionally %q, %q and %q (or %q); nothing was stored",
			shortName(name), fieldFile, fieldCacheKey, fieldTTL, fieldPipelineID, fieldPipeline)
	}
	if f.seen[canon] {
		if canon == fieldFile {
			return server.Errorf(server.EInvalid, "form field %q appears twice: send one file per upload; nothing was stored", fieldFile)
		}
		if canon == fieldPipelineID {
			return server.Errorf(server.EInvalid, "form field %q appears twice (%q and %q are one field); nothing was stored", fieldPipelineID, fieldPipelineID, fieldPipeline)
		}
		return server.Errorf(server.EInvalid, "form field %s appears twice; nothing was stored", shortName(name))
	}
	if f.seen == nil {
		f.seen = map[string]bool{}
	}
	f.seen[canon] = true
	if canon == fieldFile {
		return nil // the caller streams it
	}
	b, err := io.ReadAll(io.LimitReader(part, maxFieldLen+1))
	if err != nil {
		return server.Errorf(server.EInvalid, "malformed multipart body: %v", err)
	}
	v := string(b)
	if len(b) > maxFieldLen {
		return server.Errorf(server.EInvalid, "form field %s is more than %d bytes; nothing was stored", shortName(name), maxFieldLen)
	}
	switch canon {
	case fieldCacheKey:
		if err := checkCacheKey(v); err != nil {
			return err
		}
		f.cacheKey = v
	case fieldTTL:
		if f.ttl, err = parseTTL(v); err != nil {
			return err
		}
	case fieldPipelineID:
		if f.pipelineID, err = server.NormalizePipelineID(v); err != nil {
			return server.Errorf(server.EInvalid, "form field %s: %s", shortName(name), server.ErrorMessage(err))
		}
	}
	return nil
}

// applyTo sets the fields given on in; a field overrides the header of
// the same meaning (X-Cache-Key, X-TTL, X-AgentCache-Pipeline-Id).
func (f *formFields) applyTo(in *uploadInput) {
	if f.seen[fieldCacheKey] {
		in.cacheKey = f.cacheKey
	}
	if f.seen[fieldTTL] {
		in.ttl = f.ttl
	}
	if f.seen[fieldPipelineID] {
		in.pipelineID = f.pipelineID
	}
}

// formBody is the file of a multipart upload, streamed: its Read gives the
// file part's bytes and, when they end, reads the parts that follow (the
// fields after the file, each bounded by maxFieldLen and checked as it
// arrives) before it reports io.EOF. So the store sees the end of the
// file only once the whole body is read and every field is known and
// valid; a bad field after the file fails the read, and the upload
// stores nothing.
type formBody struct {
	mr     *multipart.Reader
	file   *multipart.Part
	fields *formFields
	done   bool  // the body ended and every field was read
	err    error // the refusal of a field after the file (EInvalid)
}

func (b *formBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.file.Read(p)
	if !errors.Is(err, io.EOF) {
		return n, err
	}
	if err := b.readTail(); err != nil {
		b.err = err
		return n, err
	}
	b.done = true
	return n, io.EOF
}

// readTail reads the parts after the file to the end of the body.
func (b *formBody) readTail() error {
	for {
		part, err := b.mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return server.Errorf(server.EInvalid, "malformed multipart body: %v", err)
		}
		err = b.fields.read(part)
		part.Close()
		if err != nil {
			return err
		}
	}
}

// finish is called once the store has the file: it fails when a field
// after the file was refused (the refusal) or the body was not read to
// its end (the store stopped early: nothing after the file is known), and
// otherwise applies the fields to in.
func (b *formBody) finish(in *uploadInput) error {
	if b.err != nil {
		return b.err
	}
	if !b.done {
		// A store reads to io.EOF when the size is unknown; should one not,
		// read what is left: the fields after the file decide what is
		// recorded, and any bytes of the file part would be lost ones.
		if n, err := io.Copy(io.Discard, io.LimitReader(b, 1)); err != nil {
			return err
		} else if n > 0 || !b.done {
			return server.Errorf(server.EInvalid, "the file part is longer than the bytes stored; nothing was stored, send it again")
		}
	}
	b.fields.applyTo(in)
	return nil
}

// readForm reads a multipart/form-data upload up to its file part, the
// fields before it checked and applied; the fields after it are read by
// the file's reader (formBody) when the file ends.
func readForm(in uploadInput, body io.Reader, boundary string) (uploadInput, error) {
	if boundary == "" {
		return in, server.Errorf(server.EInvalid, "multipart/form-data without a boundary")
	}
	mr := multipart.NewReader(body, boundary)
	fields := &formFields{}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return in, server.Errorf(server.EInvalid, "multipart body has no %q field", fieldFile)
		}
		if err != nil {
			return in, server.Errorf(server.EInvalid, "malformed multipart body: %v", err)
		}
		if err := fields.read(part); err != nil {
			return in, err
		}
		if part.FormName() != fieldFile {
			continue
		}
		in.filename = partFilename(part)
		if in.filename == "" {
			in.filename = "upload"
		}
		in.contentType = part.Header.Get("Content-Type")
		fields.applyTo(&in)
		in.form = &formBody{mr: mr, file: part, fields: fields}
		in.body = in.form
		return in, nil
	}
}

// partFilename is the filename parameter of a file part as the client
// sent it, folders included (a browser's folder upload sends
// "photos/sub/q.jpg"; Part.FileName keeps only the base name): the
// server cleans it (server.CleanPath). A Content-Disposition the mime
// package cannot parse falls back to Part.FileName.
func partFilename(part *multipart.Part) string {
	if _, params, err := mime.ParseMediaType(part.Header.Get("Content-Disposition")); err == nil {
		return params["filename"]
	}
	return part.FileName()
}
