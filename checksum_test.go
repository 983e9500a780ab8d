package offload

import (
	"errors"
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
