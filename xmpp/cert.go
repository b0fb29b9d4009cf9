package xmpp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Names of the generated certificate and key in the data directory.
const (
	GeneratedCertFile = "xmpp-cert.pem"
	GeneratedKeyFile  = "xmpp-key.pem"
)

// generatedValidity is how long a generated certificate is valid.
const generatedValidity = 10 * 365 * 24 * time.Hour

// LoadOrCreateCertificate returns the broker's certificate: the pair in
// certFile and keyFile when both are given; when both are empty, a
// self-signed ECDSA P-256 certificate for domain kept in dataDir
// (GeneratedCertFile, GeneratedKeyFile with mode 0600), made on the first
// start, reused afterwards, and made again if it no longer fits domain
// or has expired. generated reports that a new one was just made (the
// caller should warn: CPEs that verify certificates will refuse it).
func LoadOrCreateCertificate(certFile, keyFile, dataDir, domain string) (cert tls.Certificate, generated bool, err error) {
	switch {
	case certFile != "" && keyFile != "":
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return tls.Certificate{}, false, fmt.Errorf("%w: %w", ErrXmppCertificate, err)
		}
		return c, false, nil
	case certFile != "" || keyFile != "":
		return tls.Certificate{}, false, fmt.Errorf("%w: need both certificate and key files, got %q and %q", ErrXmppCertificate, certFile, keyFile)
	case dataDir == "" || domain == "":
		return tls.Certificate{}, false, fmt.Errorf("%w: no certificate given and no data directory and domain to generate one", ErrXmppCertificate)
	}
	cp, kp := filepath.Join(dataDir, GeneratedCertFile), filepath.Join(dataDir, GeneratedKeyFile)
	c, err := tls.LoadX509KeyPair(cp, kp)
	switch {
	case err == nil && fits(c, domain):
		return c, false, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return tls.Certificate{}, false, fmt.Errorf("%w: %w", ErrXmppCertificate, err)
	}
	c, certPEM, keyPEM, err := selfSigned(domain)
	if err != nil {
		return tls.Certificate{}, false, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return tls.Certificate{}, false, fmt.Errorf("%w: %w", ErrXmppCertificate, err)
	}
	if err := writeFileAtomic(kp, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, false, err
	}
	if err := writeFileAtomic(cp, certPEM, 0o644); err != nil {
		return tls.Certificate{}, false, err
	}
	return c, true, nil
}

// fits reports whether a stored certificate names domain and is valid
// for at least another day.
func fits(c tls.Certificate, domain string) bool {
	leaf := c.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return false
		}
	}
	if time.Now().Add(24 * time.Hour).After(leaf.NotAfter) {
		return false
	}
	if ip := net.ParseIP(domain); ip != nil {
		return slices.ContainsFunc(leaf.IPAddresses, ip.Equal)
	}
	return slices.Contains(leaf.DNSNames, domain)
}

func selfSigned(domain string) (tls.Certificate, []byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("%w: %w", ErrXmppCertificate, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("%w: %w", ErrXmppCertificate, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: domain, Organization: []string{"crrelay"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(generatedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if ip := net.ParseIP(domain); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{domain}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("%w: %w", ErrXmppCertificate, err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("%w: %w", ErrXmppCertificate, err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("%w: %w", ErrXmppCertificate, err)
	}
	return c, certPEM, keyPEM, nil
}

// writeFileAtomic writes data to a temporary file in the same directory
// and renames it into place, so a crash never leaves half a key.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrXmppCertificate, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = fmt.Errorf("%w: writing %s: %w", ErrXmppCertificate, path, err)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
