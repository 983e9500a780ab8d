package offload

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc64"
)

// crc64NVMEPolynomial is CRC-64/NVME in the reversed form hash/crc64 takes.
// S3 can check a CRC over the whole object however it was uploaded
// (ChecksumType FULL_OBJECT), unlike SHA-256, whose multipart form is only a
// checksum of the parts' checksums.
const crc64NVMEPolynomial = 0x9a6c9329ac4bc9b5

var crc64NVMETable = crc64.MakeTable(crc64NVMEPolynomial)

// NewCRC64NVME returns a hash computing the full-object checksum the agent
// sends with every upload and the ledger records.
func NewCRC64NVME() hash.Hash64 { return crc64.New(crc64NVMETable) }

// EncodeChecksum renders a CRC64NVME the way S3 carries it in
// x-amz-checksum-crc64nvme: base64 of the 8 big-endian bytes.
func EncodeChecksum(sum uint64) string {
	return base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint64(nil, sum))
}

// DecodeChecksum parses what EncodeChecksum renders.
func DecodeChecksum(s string) (uint64, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 8 {
		return 0, fmt.Errorf("%w: %q is not a base64 CRC64NVME", ErrChecksumMismatch, s)
	}
	return binary.BigEndian.Uint64(b), nil
}
