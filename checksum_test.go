package offload

import (
	"bytes"
	"errors"
	"hash/crc64"
	"math/rand/v2"
	"testing"
)

func TestCRC64NVMECheckValue(t *testing.T) {
	// The catalogue's check value for CRC-64/NVME over "123456789".
	h := NewCRC64NVME()
	h.Write([]byte("123456789"))
	if got, want := h.Sum64(), uint64(0xae8b14860a799888); got != want {
		t.Fatalf("CRC64NVME(123456789) = %#x; want %#x", got, want)
	}
}

func TestChecksumEncoding(t *testing.T) {
	for _, sum := range []uint64{0, 1, 0xae8b14860a799888, ^uint64(0)} {
		s := EncodeChecksum(sum)
		got, err := DecodeChecksum(s)
		if err != nil || got != sum {
			t.Errorf("DecodeChecksum(EncodeChecksum(%#x)=%q) = %#x, %v", sum, s, got, err)
		}
	}
	for _, bad := range []string{"", "AAAA", "not base64!", "AAAAAAAAAAAAAA=="} {
		if _, err := DecodeChecksum(bad); !errors.Is(err, ErrChecksumMismatch) {
			t.Errorf("DecodeChecksum(%q) err = %v; want ErrChecksumMismatch", bad, err)
		}
	}
}

// BenchmarkCRC64NVME hashes 1 MiB in 32 KiB writes (io.Copy's size), the
// way the agent hashes a file it uploads.
func BenchmarkCRC64NVME(b *testing.B) {
	data := make([]byte, 1<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		h := NewCRC64NVME()
		for off := 0; off < len(data); off += 32 << 10 {
			h.Write(data[off : off+32<<10])
		}
		h.Sum64()
	}
}

// TestCRC64NVMEMatchesHashCRC64: the hand-made slicing-by-8 gives hash/crc64's
// sums for every length and any split into writes.
func TestCRC64NVMEMatchesHashCRC64(t *testing.T) {
	data := make([]byte, 70_000)
	rand.NewChaCha8([32]byte{'c', 'r', 'c'}).Read(data)
	for _, n := range []int{0, 1, 7, 8, 9, 63, 64, 65, 2047, 2048, 2049, 32 << 10, 70_000} {
		for _, chunk := range []int{1, 3, 8, 1000, 32 << 10, 1 << 20} {
			want := crc64.New(crc64NVMETable)
			want.Write(data[:n])
			got := NewCRC64NVME()
			for off := 0; off < n; off += chunk {
				got.Write(data[off:min(off+chunk, n)])
			}
			if got.Sum64() != want.Sum64() || !bytes.Equal(got.Sum([]byte("x")), want.Sum([]byte("x"))) {
				t.Fatalf("%d bytes in writes of %d: %x; hash/crc64 says %x", n, chunk, got.Sum64(), want.Sum64())
			}
		}
	}
	h := NewCRC64NVME()
	h.Write(data)
	h.Reset()
	if h.Sum64() != 0 || h.Size() != 8 || h.BlockSize() != 1 {
		t.Errorf("Reset, Size or BlockSize wrong")
	}
}

// TestCombineCRC64NVME: combining the sums of two pieces gives the sum of
// the whole, for any split, including empty pieces.
func TestCombineCRC64NVME(t *testing.T) {
	data := make([]byte, 20_000)
	rand.NewChaCha8([32]byte{'c', 'o', 'm', 'b'}).Read(data)
	sum := func(p []byte) uint64 { h := NewCRC64NVME(); h.Write(p); return h.Sum64() }
	for _, n := range []int{0, 1, 7, 8, 100, 4096, 20_000} {
		for _, cut := range []int{0, 1, n / 3, n / 2, n - 1, n} {
			if cut < 0 || cut > n {
				continue
			}
			a, b := data[:cut], data[cut:n]
			if got, want := CombineCRC64NVME(sum(a), sum(b), int64(len(b))), sum(data[:n]); got != want {
				t.Fatalf("%d bytes cut at %d: combined %x; want %x", n, cut, got, want)
			}
		}
	}
	// Many parts, as a multipart upload has.
	full, parts := sum(data), uint64(0)
	for off := 0; off < len(data); off += 3000 {
		p := data[off:min(off+3000, len(data))]
		parts = CombineCRC64NVME(parts, sum(p), int64(len(p)))
	}
	if parts != full {
		t.Errorf("parts combined %x; want %x", parts, full)
	}
}
