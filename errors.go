package offload

import "errors"

// Sentinel errors shared by the agent and the resolver. SDK errors are
// translated into these at the boundary, so callers test with errors.Is.
var (
	// ErrInvalidPath means a file path, URL path or key breaks the naming
	// contract (see Mapping); such a name is refused, never "cleaned".
	ErrInvalidPath = errors.New("invalid path")

	// ErrNotFound means the object or ledger item does not exist.
	ErrNotFound = errors.New("not found")

	// ErrConflict means a different object or ledger item already holds the
	// key; the original is never overwritten.
	ErrConflict = errors.New("conflict")

	// ErrChecksumMismatch means the bytes S3 holds are not the bytes read
	// from the local file.
	ErrChecksumMismatch = errors.New("checksum mismatch")
)
