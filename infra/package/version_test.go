package main

import (
	"os/exec"
	"testing"
)

func TestDebianUpstreamVersion(t *testing.T) {
	for _, tt := range []struct{ goVersion, want string }{
		{"v1.2.3", "1.2.3"},
		{"v1.2.3-rc.1", "1.2.3~rc.1"},
		{"v0.0.0-20261206051842-a98d0276ab55", "0.0.0~git20261206051842.a98d0276ab55"},
		{"v0.0.0-20261206051842-a98d0276ab55+dirty", "0.0.0~git20261206051842.a98d0276ab55+dirty"},
		{"v1.2.4-0.20261206051842-a98d0276ab55", "1.2.4~0.git20261206051842.a98d0276ab55"},
		{"v1.2.3-rc.1.0.20261206051842-a98d0276ab55", "1.2.3~rc.1.0.git20261206051842.a98d0276ab55"},
		{"v1.2.3+dirty", "1.2.3+dirty"},
	} {
		got, err := debianUpstreamVersion(tt.goVersion)
		if err != nil || got != tt.want {
			t.Errorf("debianUpstreamVersion(%q) = %q, %v; want %q", tt.goVersion, got, err, tt.want)
		}
	}
	for _, bad := range []string{"(devel)", "", "1.2.3", "v1.2", "vX"} {
		if got, err := debianUpstreamVersion(bad); err == nil {
			t.Errorf("debianUpstreamVersion(%q) = %q; want an error (no version to package)", bad, got)
		}
	}
}

// TestDebianVersionsSortAsGoVersions: dpkg orders the package versions as
// Go orders the module versions they come from (listed here in Go's
// order, https://go.dev/ref/mod#pseudo-versions), so an upgrade to a later
// commit or tag is an upgrade for apt too.
func TestDebianVersionsSortAsGoVersions(t *testing.T) {
	dpkg, err := exec.LookPath("dpkg")
	if err != nil {
		t.Skip("dpkg is not installed; TestDebianUpstreamVersion checks the mapping")
	}
	ascending := []string{
		"v0.0.0-20261206051842-a98d0276ab55",
		"v0.0.0-20261206051842-a98d0276ab55+dirty",
		"v0.0.0-20261207000000-0123456789ab",
		"v0.1.0-rc.1",
		"v0.1.0-rc.1.0.20261208000000-0123456789ab",
		"v0.1.0-rc.2",
		"v0.1.0",
		"v0.1.1-0.20261209000000-0123456789ab",
		"v0.1.1",
		"v1.0.0",
	}
	for i := 1; i < len(ascending); i++ {
		lo, err1 := debianVersion(ascending[i-1])
		hi, err2 := debianVersion(ascending[i])
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if err := exec.Command(dpkg, "--compare-versions", lo, "lt", hi).Run(); err != nil {
			t.Errorf("dpkg --compare-versions %s lt %s: %v; Go orders %s before %s", lo, hi, err, ascending[i-1], ascending[i])
		}
		if err := exec.Command(dpkg, "--validate-version", hi).Run(); err != nil {
			t.Errorf("dpkg --validate-version %s: %v", hi, err)
		}
	}
}

func TestDebianArch(t *testing.T) {
	for goarch, want := range map[string]string{"amd64": "amd64", "arm64": "arm64", "386": "i386", "ppc64le": "ppc64el"} {
		if got, err := debianArch(goarch); err != nil || got != want {
			t.Errorf("debianArch(%q) = %q, %v; want %q", goarch, got, err, want)
		}
	}
	if _, err := debianArch("arm"); err == nil {
		t.Error("debianArch(arm): want an error (armel or armhf depends on GOARM)")
	}
}
