package prosody

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/crrelay/crrelay/internal/scramcred"
	"golang.org/x/sync/errgroup"
)

// Account is an XMPP account of the server's domain.
type Account struct {
	User     string // the localpart
	Password string
}

// iterations is the PBKDF2 iteration count of the accounts written here:
// crrelay's, so that PLAIN logins cost both servers the same. Prosody's
// own default is 10,000.
const iterations = scramcred.Iterations

// AddAccounts creates accounts, replacing any of the same name, by writing
// them where Prosody's internal_hashed provider keeps them
// (data/<host>/accounts/<user>.dat, a Lua table of SCRAM-SHA-1 keys),
// concurrently: prosodyctl takes 70 ms an account. Prosody reads an
// account's file at each login, so accounts may be added while it runs.
func (s *Server) AddAccounts(ctx context.Context, accounts []Account) error {
	dir := s.accountDir()
	g, ctx := errgroup.WithContext(ctx)
	workers := min(2*runtime.NumCPU(), len(accounts))
	for w := range workers {
		g.Go(func() error {
			for i := w; i < len(accounts); i += workers {
				if err := ctx.Err(); err != nil {
					return err
				}
				a := accounts[i]
				name := filepath.Join(dir, Encode(a.User)+".dat")
				content, err := accountFile(a.Password)
				if err != nil {
					return fmt.Errorf("prosody: account %s: %w", a.User, err)
				}
				if err := os.WriteFile(name, content, 0o640); err != nil {
					return fmt.Errorf("prosody: account %s: %w", a.User, err)
				}
				if s.uid >= 0 {
					if err := os.Chown(name, s.uid, s.gid); err != nil {
						return fmt.Errorf("prosody: account %s: %w", a.User, err)
					}
				}
			}
			return nil
		})
	}
	return g.Wait()
}

func (s *Server) accountDir() string {
	return filepath.Join(s.dir, "data", Encode(s.domain), "accounts")
}

// accountFile is an account file as internal_hashed writes it: the salt
// is a string (Prosody uses a UUID), the keys hex (RFC 5802 3).
func accountFile(pass string) ([]byte, error) {
	var sb [12]byte
	rand.Read(sb[:])
	salt := hex.EncodeToString(sb[:])
	salted, err := pbkdf2.Key(sha1.New, pass, []byte(salt), iterations, sha1.Size)
	if err != nil {
		return nil, err // SHA-1 in FIPS 140-only mode
	}
	mac := func(key []byte, s string) []byte {
		m := hmac.New(sha1.New, key)
		m.Write([]byte(s))
		return m.Sum(nil)
	}
	stored := sha1.Sum(mac(salted, "Client Key"))
	return fmt.Appendf(nil, "return {\n\t[\"iteration_count\"] = %d;\n\t[\"salt\"] = %q;\n\t[\"stored_key\"] = %q;\n\t[\"server_key\"] = %q;\n};\n",
		iterations, salt, hex.EncodeToString(stored[:]), hex.EncodeToString(mac(salted, "Server Key"))), nil
}

// Encode is how Prosody's datamanager names files and directories: every
// byte but ASCII letters and digits as %xx.
func Encode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02x", c)
		}
	}
	return b.String()
}
