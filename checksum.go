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

var (
	crc64NVMETable = crc64.MakeTable(crc64NVMEPolynomial)
	// crc64NVMESlicing8 is built once. hash/crc64 has these tables only for
	// its own two polynomials and builds one (16 KiB) on every Write of
	// 2 KiB or more for any other; building it once makes 32 KiB writes
	// about 10 % faster (BenchmarkCRC64NVME: 1.48–1.55 to 1.66–1.72 GB/s).
	crc64NVMESlicing8 = makeSlicing8(crc64NVMETable)
)

// NewCRC64NVME returns a hash computing the full-object checksum the agent
// sends with every upload and the ledger records. Its sums are hash/crc64's
// with the CRC-64/NVME table (TestCRC64NVMEMatchesHashCRC64).
func NewCRC64NVME() hash.Hash64 { return new(crc64NVME) }

// crc64NVME is hash/crc64's digest with the slicing-by-8 tables made once.
type crc64NVME struct{ crc uint64 }

func (d *crc64NVME) Size() int      { return crc64.Size }
func (d *crc64NVME) BlockSize() int { return 1 }
func (d *crc64NVME) Reset()         { d.crc = 0 }
func (d *crc64NVME) Sum64() uint64  { return d.crc }
func (d *crc64NVME) Sum(in []byte) []byte {
	return binary.BigEndian.AppendUint64(in, d.crc)
}

func (d *crc64NVME) Write(p []byte) (int, error) {
	t := crc64NVMESlicing8
	crc := ^d.crc
	n := len(p)
	for len(p) >= 8 {
		crc ^= binary.LittleEndian.Uint64(p)
		crc = t[7][crc&0xff] ^ t[6][(crc>>8)&0xff] ^ t[5][(crc>>16)&0xff] ^ t[4][(crc>>24)&0xff] ^
			t[3][(crc>>32)&0xff] ^ t[2][(crc>>40)&0xff] ^ t[1][(crc>>48)&0xff] ^ t[0][crc>>56]
		p = p[8:]
	}
	for _, v := range p {
		crc = t[0][byte(crc)^v] ^ (crc >> 8)
	}
	d.crc = ^crc
	return n, nil
}

// makeSlicing8 extends a byte-wise table to slicing-by-8: t[j][b] is the
// CRC of byte b followed by j zero bytes.
func makeSlicing8(tab *crc64.Table) *[8]crc64.Table {
	t := new([8]crc64.Table)
	t[0] = *tab
	for i := range 256 {
		crc := t[0][i]
		for j := 1; j < 8; j++ {
			crc = t[0][crc&0xff] ^ (crc >> 8)
			t[j][i] = crc
		}
	}
	return t
}

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

// CombineCRC64NVME returns the CRC64NVME of A followed by B from the CRCs
// of A and of B and B's length, without reading either again: the agent
// hashes each part of a multipart upload on its own goroutine and combines
// the parts' sums into the full-object one (zlib's crc32_combine method,
// for this polynomial).
func CombineCRC64NVME(crcA, crcB uint64, lenB int64) uint64 {
	if lenB <= 0 {
		return crcA
	}
	return multModP(xPow8n(uint64(lenB)), crcA) ^ crcB
}

// multModP multiplies a and b modulo the CRC polynomial, both in the
// reflected bit order (x^0 is the top bit).
func multModP(a, b uint64) uint64 {
	var p uint64
	for m := uint64(1) << 63; m != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
		}
		if b&1 != 0 {
			b = b>>1 ^ crc64NVMEPolynomial
		} else {
			b >>= 1
		}
	}
	return p
}

// x2n[k] is x^(2^k) modulo the polynomial.
var x2n = func() (t [64]uint64) {
	t[0] = 1 << 62 // x^1
	for k := 1; k < len(t); k++ {
		t[k] = multModP(t[k-1], t[k-1])
	}
	return t
}()

// xPow8n is x^(8n) modulo the polynomial: appending n zero bytes.
func xPow8n(n uint64) uint64 {
	p := uint64(1) << 63 // x^0
	for k := 3; n != 0; n, k = n>>1, k+1 {
		if n&1 != 0 {
			p = multModP(x2n[k%64], p)
		}
	}
	return p
}
