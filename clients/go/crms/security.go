package crms

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Security is what a client or worker presents to a crms control plane: a CA
// file to verify the server with (turns TLS on), a client certificate and key
// (mutual TLS), and an API token sent as "authorization: Bearer TOKEN".
type Security struct {
	CA, Cert, Key string
	Token         string
}

// SecurityFromEnv fills the empty fields of s from CRMS_CA, CRMS_CERT,
// CRMS_KEY and CRMS_TOKEN.
func SecurityFromEnv(s Security) Security {
	pick := func(v, env string) string {
		if v != "" {
			return v
		}
		return os.Getenv(env)
	}
	return Security{CA: pick(s.CA, "CRMS_CA"), Cert: pick(s.Cert, "CRMS_CERT"), Key: pick(s.Key, "CRMS_KEY"), Token: pick(s.Token, "CRMS_TOKEN")}
}

// DialOptions returns the gRPC dial options for s: TLS credentials when a CA
// or a client certificate is given (none otherwise) and the token, if any.
func (s Security) DialOptions() ([]grpc.DialOption, error) {
	var out []grpc.DialOption
	if (s.Cert == "") != (s.Key == "") {
		return nil, fmt.Errorf("a client certificate and its key go together (cert %q, key %q)", s.Cert, s.Key)
	}
	if s.CA != "" || s.Cert != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if s.CA != "" {
			pem, err := os.ReadFile(s.CA)
			if err != nil {
				return nil, fmt.Errorf("cannot read CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("no certificate in CA file %s", s.CA)
			}
			cfg.RootCAs = pool
		}
		if s.Cert != "" {
			pair, err := tls.LoadX509KeyPair(s.Cert, s.Key)
			if err != nil {
				return nil, fmt.Errorf("cannot load client certificate: %w", err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		out = append(out, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	}
	if s.Token != "" {
		out = append(out, grpc.WithPerRPCCredentials(bearer{token: s.Token}))
	}
	return out, nil
}

// WithSecurity makes Dial use s (see Security.DialOptions). Dial without it
// still reads CRMS_CA, CRMS_CERT, CRMS_KEY and CRMS_TOKEN.
func WithSecurity(s Security) Option {
	return func(o *options) { o.security = &s }
}

// WithToken makes every call carry an API token.
func WithToken(token string) Option {
	return func(o *options) {
		if o.security == nil {
			o.security = &Security{}
		}
		o.security.Token = token
	}
}

type bearer struct{ token string }

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity is false so that a token also works on a plaintext
// loopback connection; over the network, use TLS.
func (b bearer) RequireTransportSecurity() bool { return false }
