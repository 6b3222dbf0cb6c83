package smtp

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// PasswordTable is an Authenticator over bcrypt hashes (config's
// auth.users). An unknown user costs one bcrypt comparison too, so that the
// reply time does not tell which user names exist.
type PasswordTable struct {
	users map[string][]byte
}

// dummyHash is compared against for unknown users (cost 10, bcrypt's
// default; the password it hashes is of no use to anyone).
const dummyHash = "$2a$10$B/HduBXOW09tsVGASyl6.OvVQsPAqn6KV2tF4FvGWgQVCR5Wuqrye"

// NewPasswordTable returns a table over users (user name -> bcrypt hash).
func NewPasswordTable(users map[string]string) *PasswordTable {
	t := &PasswordTable{users: make(map[string][]byte, len(users))}
	for u, h := range users {
		t.users[u] = []byte(h)
	}
	return t
}

// Authenticate implements Authenticator.
func (t *PasswordTable) Authenticate(ctx context.Context, user, pass string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("smtp: password table: %w", err)
	}
	h, known := t.users[user]
	if !known {
		h = []byte(dummyHash)
	}
	err := bcrypt.CompareHashAndPassword(h, []byte(pass))
	switch {
	case !known:
		return false, nil
	case err == nil:
		return true, nil
	case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
		return false, nil
	}
	return false, fmt.Errorf("smtp: password table: user %q: %w", user, err)
}

var _ Authenticator = (*PasswordTable)(nil)
