package admin

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// MinTokenLength is the shortest bearer token accepted: a token an operator
// generated (openssl rand -hex 32, a Kubernetes Secret), not a password.
const MinTokenLength = 16

// LoadToken reads a bearer token from a file: its content without
// surrounding white space (a trailing newline is usual in such files).
func LoadToken(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	token := bytes.TrimSpace(data)
	if len(token) < MinTokenLength {
		return nil, fmt.Errorf("%s: the token must be at least %d characters, without white space around it", path, MinTokenLength)
	}
	if bytes.ContainsFunc(token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, fmt.Errorf("%s: the token must be one line of printable characters without spaces", path)
	}
	return token, nil
}

// requireToken answers 401 to every request that does not carry
// "Authorization: Bearer <token>". Both sides are hashed before the
// constant-time comparison, so neither the content nor the length of the
// token can be learnt from response times.
func requireToken(token []byte, next http.Handler) http.Handler {
	want := sha256.Sum256(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		sum := sha256.Sum256([]byte(got))
		if !ok || !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="bulkhead admin"`)
			http.Error(w, "unauthorized: this admin endpoint needs Authorization: Bearer <the token of -admin-token-file>\n", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
