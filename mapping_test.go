package offload

import (
	"errors"
	"strings"
	"testing"
)

func TestKeyForFile(t *testing.T) {
	m := DefaultMapping
	tests := []struct {
		rel     string
		wantKey string // empty: refused with ErrInvalidPath
	}{
		{"cat.jpg", "original/cat.jpg"},
		{"2024/05/cat.jpg", "original/2024/05/cat.jpg"},
		{"a b.jpg", "original/a b.jpg"},
		{"café.jpg", "original/café.jpg"},
		{"-rf.jpg", "original/-rf.jpg"},
		{"100%.jpg", "original/100%.jpg"},
		{"%2e%2e", "original/%2e%2e"}, // a literal file name, not a traversal
		{"..jpg", "original/..jpg"},
		{"...", "original/..."},
		{".hidden", "original/.hidden"}, // the agent ignores dotfiles; the mapping does not judge
		{strings.Repeat("a", 255), "original/" + strings.Repeat("a", 255)},

		{"", ""},
		{".", ""},
		{"..", ""},
		{"../etc/passwd", ""},
		{"a/../b", ""},
		{"a/./b", ""},
		{"/etc/passwd", ""},
		{"a//b", ""},
		{"a/", ""},
		{`a\b.jpg`, ""},
		{`..\..\x`, ""},
		{"a\x00b", ""},
		{"a\nb", ""},
		{"a\tb", ""},
		{"a\x7fb", ""},
		{"a\u0085b", ""}, // C1 control (NEL)
		{"a\uFFFEb", ""},
		{"\xff\xfe.jpg", ""},
		{"a\xc3", ""}, // truncated UTF-8
		{strings.Repeat("a", 256), ""},
	}
	for _, tt := range tests {
		key, err := m.KeyForFile(tt.rel)
		if tt.wantKey == "" {
			if !errors.Is(err, ErrInvalidPath) {
				t.Errorf("KeyForFile(%q) = %q, %v; want ErrInvalidPath", tt.rel, key, err)
			}
			continue
		}
		if err != nil || key != tt.wantKey {
			t.Errorf("KeyForFile(%q) = %q, %v; want %q", tt.rel, key, err, tt.wantKey)
		}
	}
}

func TestKeyLengthLimit(t *testing.T) {
	m := DefaultMapping
	seg := strings.Repeat("b", 200)
	var parts []string
	for len(strings.Join(parts, "/")) < MaxKeyBytes {
		parts = append(parts, seg)
	}
	long := strings.Join(parts, "/")
	if _, err := m.KeyForFile(long); !errors.Is(err, ErrInvalidPath) {
		t.Errorf("KeyForFile(%d bytes) err = %v; want ErrInvalidPath", len(long), err)
	}
	// Exactly at the limit is accepted.
	target := MaxKeyBytes - len(m.KeyPrefix)
	exact := strings.Repeat("c/", (target-1)/2) + strings.Repeat("c", 1+(target-1)%2)
	if key, err := m.KeyForFile(exact); err != nil || len(key) != MaxKeyBytes {
		t.Errorf("KeyForFile(%d bytes) = %d bytes, %v; want %d bytes", len(exact), len(key), err, MaxKeyBytes)
	}
}

func TestKeyForURL(t *testing.T) {
	m := DefaultMapping
	tests := []struct {
		path    string
		wantKey string // empty: refused with ErrInvalidPath
	}{
		{"/static/cat.jpg", "original/cat.jpg"},
		{"/static/2024/cat.jpg", "original/2024/cat.jpg"},
		{"/static/a%20b.jpg", "original/a b.jpg"},
		{"/static/a+b.jpg", "original/a+b.jpg"}, // + is literal in a path
		{"/static/caf%C3%A9.jpg", "original/café.jpg"},
		{"/static/café.jpg", "original/café.jpg"},
		{"/static/100%25.jpg", "original/100%.jpg"},
		{"/static/%252e%252e", "original/%2e%2e"}, // decoded once: a literal name
		{"/static/%41.jpg", "original/A.jpg"},

		{"/static/", ""},
		{"/static", ""},
		{"/other/cat.jpg", ""},
		{"/STATIC/cat.jpg", ""},
		{"/%73tatic/cat.jpg", ""}, // the prefix is matched as sent
		{"static/cat.jpg", ""},
		{"/static/../secret", ""},
		{"/static/%2e%2e/secret", ""},
		{"/static/%2E%2E/secret", ""},
		{"/static/%2e/cat.jpg", ""},
		{"/static/a%2fb.jpg", ""},
		{"/static/a%2Fb.jpg", ""},
		{"/static/..%2fsecret", ""},
		{"/static/a%5cb.jpg", ""},
		{"/static/a%00b.jpg", ""},
		{"/static/a%0ab.jpg", ""},
		{"/static/a%ffb.jpg", ""},
		{"/static/a%zzb.jpg", ""},
		{"/static/a%", ""},
		{"/static//cat.jpg", ""},
		{"/static/cat.jpg/", ""},
		{"/static/" + strings.Repeat("x", 1100), ""},
	}
	for _, tt := range tests {
		key, err := m.KeyForURL(tt.path)
		if tt.wantKey == "" {
			if !errors.Is(err, ErrInvalidPath) {
				t.Errorf("KeyForURL(%q) = %q, %v; want ErrInvalidPath", tt.path, key, err)
			}
			continue
		}
		if err != nil || key != tt.wantKey {
			t.Errorf("KeyForURL(%q) = %q, %v; want %q", tt.path, key, err, tt.wantKey)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	mappings := []Mapping{DefaultMapping, {URLPrefix: "/", KeyPrefix: ""}, {URLPrefix: "/img/full/", KeyPrefix: "site/a/"}}
	names := []string{"cat.jpg", "a b/c d.jpg", "100%.jpg", "é/ü?#&=.jpg", "%2f", "x;y,z@:$!'()*"}
	for _, m := range mappings {
		for _, name := range names {
			key, err := m.KeyForFile(name)
			if err != nil {
				t.Fatalf("%+v KeyForFile(%q): %v", m, name, err)
			}
			back, err := m.FileForKey(key)
			if err != nil || back != name {
				t.Errorf("%+v FileForKey(%q) = %q, %v; want %q", m, key, back, err, name)
			}
			u, err := m.URLForKey(key)
			if err != nil {
				t.Fatalf("%+v URLForKey(%q): %v", m, key, err)
			}
			if got, err := m.KeyForURL(u); err != nil || got != key {
				t.Errorf("%+v KeyForURL(%q) = %q, %v; want %q", m, u, got, err, key)
			}
		}
	}
}

func TestFileForKeyRefusesForeignKeys(t *testing.T) {
	for _, key := range []string{"other/cat.jpg", "original/", "original/../x", "originalcat.jpg"} {
		if rel, err := DefaultMapping.FileForKey(key); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("FileForKey(%q) = %q, %v; want ErrInvalidPath", key, rel, err)
		}
	}
}

func TestMappingValidate(t *testing.T) {
	tests := []struct {
		m    Mapping
		good bool
	}{
		{DefaultMapping, true},
		{Mapping{URLPrefix: "/", KeyPrefix: ""}, true},
		{Mapping{URLPrefix: "/a/b/", KeyPrefix: "x/y/"}, true},
		{Mapping{URLPrefix: "", KeyPrefix: "original/"}, false},
		{Mapping{URLPrefix: "static/", KeyPrefix: "original/"}, false},
		{Mapping{URLPrefix: "/static", KeyPrefix: "original/"}, false},
		{Mapping{URLPrefix: "//", KeyPrefix: ""}, false},
		{Mapping{URLPrefix: "/../", KeyPrefix: ""}, false},
		{Mapping{URLPrefix: "/a b/", KeyPrefix: ""}, false},
		{Mapping{URLPrefix: "/a%20b/", KeyPrefix: ""}, false},
		{Mapping{URLPrefix: "/static/", KeyPrefix: "original"}, false},
		{Mapping{URLPrefix: "/static/", KeyPrefix: "/original/"}, false},
		{Mapping{URLPrefix: "/static/", KeyPrefix: "a//"}, false},
		{Mapping{URLPrefix: "/static/", KeyPrefix: "../"}, false},
	}
	for _, tt := range tests {
		err := tt.m.Validate()
		if tt.good && err != nil {
			t.Errorf("%+v.Validate() = %v; want nil", tt.m, err)
		}
		if !tt.good && !errors.Is(err, ErrInvalidPath) {
			t.Errorf("%+v.Validate() = %v; want ErrInvalidPath", tt.m, err)
		}
	}
}

// checkKey asserts the contract's property for one accepted key.
func checkKey(t *testing.T, m Mapping, key string) {
	t.Helper()
	if !strings.HasPrefix(key, m.KeyPrefix) || len(key) <= len(m.KeyPrefix) || len(key) > MaxKeyBytes {
		t.Fatalf("key %q is not a valid key under %q", key, m.KeyPrefix)
	}
	rel, err := m.FileForKey(key)
	if err != nil {
		t.Fatalf("FileForKey(%q): %v", key, err)
	}
	for _, s := range strings.Split(rel, "/") {
		if s == "" || s == "." || s == ".." {
			t.Fatalf("accepted key %q has segment %q", key, s)
		}
	}
	u, err := m.URLForKey(key)
	if err != nil {
		t.Fatalf("URLForKey(%q): %v", key, err)
	}
	if !strings.HasPrefix(u, m.URLPrefix) {
		t.Fatalf("URLForKey(%q) = %q, outside %q", key, u, m.URLPrefix)
	}
	if back, err := m.KeyForURL(u); err != nil || back != key {
		t.Fatalf("KeyForURL(URLForKey(%q)) = %q, %v", key, back, err)
	}
}

func FuzzKeyForFile(f *testing.F) {
	for _, s := range []string{"cat.jpg", "a/b c.jpg", "../x", "a//b", "é.jpg", "a\\b", "%2e%2e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rel string) {
		m := DefaultMapping
		key, err := m.KeyForFile(rel)
		if err != nil {
			if !errors.Is(err, ErrInvalidPath) {
				t.Fatalf("KeyForFile(%q) error %v does not wrap ErrInvalidPath", rel, err)
			}
			return
		}
		if key != m.KeyPrefix+rel {
			t.Fatalf("KeyForFile(%q) = %q", rel, key)
		}
		checkKey(t, m, key)
		if back, _ := m.FileForKey(key); back != rel {
			t.Fatalf("FileForKey(KeyForFile(%q)) = %q", rel, back)
		}
	})
}

func FuzzKeyForURL(f *testing.F) {
	for _, s := range []string{"/static/cat.jpg", "/static/%2e%2e/x", "/static/a%2fb", "/static/a%20b", "/static/%C3%A9", "/x/y", "/static//a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		m := DefaultMapping
		key, err := m.KeyForURL(path)
		if err != nil {
			if !errors.Is(err, ErrInvalidPath) {
				t.Fatalf("KeyForURL(%q) error %v does not wrap ErrInvalidPath", path, err)
			}
			return
		}
		if !strings.HasPrefix(path, m.URLPrefix) {
			t.Fatalf("KeyForURL(%q) accepted a path outside %q", path, m.URLPrefix)
		}
		checkKey(t, m, key)
	})
}

func TestCDNPath(t *testing.T) {
	for key, want := range map[string]string{
		"originals/cat.jpg":      "/originals/cat.jpg",
		"originals/a b+c%.jpg":   "/originals/a%20b%2Bc%25.jpg",
		"originals/été/x?#.jpg":  "/originals/%C3%A9t%C3%A9/x%3F%23.jpg",
		"originals/star*":        "/originals/star%2A",
		"originals/~keep-._.jpg": "/originals/~keep-._.jpg",
	} {
		if got := CDNPath(key); got != want {
			t.Errorf("CDNPath(%q) = %q; want %q", key, got, want)
		}
	}
}
