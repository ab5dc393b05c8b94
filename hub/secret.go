package hub

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Cipher encrypts secrets at rest.
type Cipher interface {
	Seal(plain string) (string, error)
	Open(sealed string) (string, error)
}

// AESCipher seals with AES-256-GCM under a key derived from the configured
// secret key. Sealed values read "v1:" + base64(nonce || ciphertext).
type AESCipher struct{ aead cipher.AEAD }

var _ Cipher = (*AESCipher)(nil)

// NewAESCipher derives a 256-bit key from secretKey (SHA-256 of its bytes,
// so any sufficiently random string works). It refuses keys shorter than
// 16 bytes.
func NewAESCipher(secretKey string) (*AESCipher, error) {
	if len(secretKey) < 16 {
		return nil, errors.New("secret key must be at least 16 bytes")
	}
	k := sha256.Sum256([]byte(secretKey))
	b, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, err
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return &AESCipher{aead: a}, nil
}

// Seal encrypts plain. The empty string seals to the empty string.
func (c *AESCipher) Seal(plain string) (string, error) {
	if plain == "" {
		return "", nil
	}
	nonce := make([]byte, c.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := c.aead.Seal(nonce, nonce, []byte(plain), nil)
	return "v1:" + base64.StdEncoding.EncodeToString(out), nil
}

// Open decrypts a value produced by Seal.
func (c *AESCipher) Open(sealed string) (string, error) {
	if sealed == "" {
		return "", nil
	}
	raw, ok := strings.CutPrefix(sealed, "v1:")
	if !ok {
		return "", errors.New("opening secret: unknown format")
	}
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(b) < c.aead.NonceSize() {
		return "", errors.New("opening secret: malformed")
	}
	n := c.aead.NonceSize()
	p, err := c.aead.Open(nil, b[:n], b[n:], nil)
	if err != nil {
		return "", fmt.Errorf("opening secret (wrong PARTNERHUB_SECRET_KEY?): %w", err)
	}
	return string(p), nil
}
