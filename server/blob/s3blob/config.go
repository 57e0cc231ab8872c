package s3blob

import (
	"log/slog"
	"net/http"
	"strings"
)

// Defaults and limits of Config.
const (
	DefaultRegion         = "us-east-1"
	DefaultBucket         = "agentcache-assets"
	DefaultPartSize       = 8 << 20
	MinPartSize           = 5 << 20 // S3's minimum for every part but the last
	DefaultPutConcurrency = 2
)

// Config says where the bucket is and how Put streams.
type Config struct {
	// Endpoint is the S3 API's base URL, e.g.
	// https://s3.us-east-1.lyvecloud.seagate.com; a bare host gets https://.
	Endpoint string
	// PublicEndpoint is the S3 API's base URL as clients reach it, when
	// that differs from Endpoint (the server talks to http://minio:9000
	// inside a network, clients to a public name). It is used only for
	// presigned requests (PresignPart); empty: Endpoint. A bare host gets
	// https://.
	PublicEndpoint string
	// Region signs requests; default us-east-1.
	Region          string
	AccessKeyID     string
	SecretAccessKey string
	Bucket          string
	// VirtualHostedStyle addresses the bucket as a host name
	// (bucket.endpoint) instead of the default path style
	// (endpoint/bucket), which Lyve Cloud and MinIO need. It is the
	// inverse of a PathStyle flag so that the zero Config is path style.
	VirtualHostedStyle bool
	// PartSize is the size of the buffers Put streams through and so of
	// its multipart parts; default 8 MiB, at least 5 MiB.
	PartSize int64
	// PutConcurrency is how many parts one Put uploads at once; default 2.
	// A Put holds at most PartSize × (PutConcurrency+1) bytes.
	PutConcurrency int
	// CABundle is a PEM file of extra trusted CAs (added to the system
	// pool). Empty: $AWS_CA_BUNDLE when set.
	CABundle string
	// HTTPClient replaces the built-in client (then CABundle is ignored).
	HTTPClient *http.Client
	// Logger receives Setup's notes; default slog.Default().
	Logger *slog.Logger
}

// ConfigFromEnv reads the LYVE_* variables: LYVE_ENDPOINT (ok is false
// when it is unset), LYVE_REGION, LYVE_ACCESS_KEY_ID or LYVE_ACCESS_KEY,
// LYVE_SECRET_ACCESS_KEY or LYVE_SECRET_KEY, LYVE_BUCKET_NAME (default
// agentcache-assets), and LYVE_PATH_STYLE (default true; false, 0 or no
// selects virtual-hosted style); and JETTY_S3_PUBLIC_ENDPOINT, the endpoint
// presigned requests name (default: LYVE_ENDPOINT).
func ConfigFromEnv(getenv func(string) string) (Config, bool) {
	ep := strings.TrimSpace(getenv("LYVE_ENDPOINT"))
	if ep == "" {
		return Config{}, false
	}
	first := func(names ...string) string {
		for _, n := range names {
			if v := getenv(n); v != "" {
				return v
			}
		}
		return ""
	}
	c := Config{
		Endpoint:        ep,
		PublicEndpoint:  strings.TrimSpace(getenv("JETTY_S3_PUBLIC_ENDPOINT")),
		Region:          first("LYVE_REGION"),
		AccessKeyID:     first("LYVE_ACCESS_KEY_ID", "LYVE_ACCESS_KEY"),
		SecretAccessKey: first("LYVE_SECRET_ACCESS_KEY", "LYVE_SECRET_KEY"),
		Bucket:          first("LYVE_BUCKET_NAME"),
	}
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	switch strings.ToLower(strings.TrimSpace(getenv("LYVE_PATH_STYLE"))) {
	case "false", "0", "no", "off":
		c.VirtualHostedStyle = true
	}
	return c, true
}
