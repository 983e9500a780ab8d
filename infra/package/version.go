package main

import (
	"fmt"
	"regexp"
)

// debianRevision is the package's Debian revision: the packaging of one
// upstream version. Its own number, so a fix to the packaging alone (a
// maintainer script) could ship as -2 of the same binary; and a revision
// makes this a non-native package, whose Debian changelog is
// changelog.Debian.gz beside the project's own changelog.gz.
const debianRevision = "1"

var (
	// goVersionRE is a Go module version as the toolchain stamps the main
	// module from git (Go 1.24+): a semver tag vX.Y.Z[-pre], or a
	// pseudo-version, either with "+dirty" when the checkout had
	// uncommitted changes.
	goVersionRE = regexp.MustCompile(`^v([0-9]+\.[0-9]+\.[0-9]+)(?:-([0-9A-Za-z.-]+))?(\+dirty)?$`)
	// pseudoRE is the pre-release part of a pseudo-version
	// (https://go.dev/ref/mod#pseudo-versions): an optional base
	// ("0" after a release tag, "rc.1.0" after a pre-release tag), then
	// the commit's UTC time and its 12-hex-digit abbreviation.
	pseudoRE = regexp.MustCompile(`^(?:(.*)\.)?([0-9]{14})-([0-9a-f]{12})$`)
)

// debianUpstreamVersion maps the Go module version that "offload-agent
// version" prints to the package's upstream version, so the two name the
// same build and sort the same way:
//
//	v1.2.3                                  1.2.3            (HEAD is tagged v1.2.3)
//	v1.2.3-rc.1                             1.2.3~rc.1       (a pre-release tag)
//	v0.0.0-20261206051842-a98d0276ab55      0.0.0~git20261206051842.a98d0276ab55 (no tag yet)
//	v1.2.4-0.20261206051842-a98d0276ab55    1.2.4~0.git20261206051842.a98d0276ab55 (after v1.2.3)
//	v1.2.3-rc.1.0.20261206051842-a98d...    1.2.3~rc.1.0.git20261206051842.a98d... (after v1.2.3-rc.1)
//	...+dirty                               ...+dirty        (uncommitted changes)
//
// "~" sorts before anything in Debian's ordering, as a pre-release does
// in semver: a pseudo-version stays below the release it leads to and
// above the tag it follows, exactly as Go orders them.
func debianUpstreamVersion(goVersion string) (string, error) {
	m := goVersionRE.FindStringSubmatch(goVersion)
	if m == nil {
		return "", fmt.Errorf("the binary's module version is %q, not a tag or pseudo-version: "+
			"Go stamps the version only when it builds inside a git checkout with -buildvcs=true", goVersion)
	}
	release, pre, dirty := m[1], m[2], m[3]
	v := release
	if p := pseudoRE.FindStringSubmatch(pre); p != nil {
		base, when, rev := p[1], p[2], p[3]
		if base != "" {
			base += "."
		}
		v += "~" + base + "git" + when + "." + rev
	} else if pre != "" {
		v += "~" + pre
	}
	return v + dirty, nil
}

// debianVersion is the package's full version: upstream and revision.
func debianVersion(goVersion string) (string, error) {
	up, err := debianUpstreamVersion(goVersion)
	if err != nil {
		return "", err
	}
	return up + "-" + debianRevision, nil
}

// debianArch maps GOARCH to Debian's architecture name. GOARCH=arm is
// left out: armel and armhf differ in GOARM, which this does not choose.
func debianArch(goarch string) (string, error) {
	a, ok := map[string]string{
		"amd64": "amd64", "arm64": "arm64", "386": "i386",
		"ppc64le": "ppc64el", "riscv64": "riscv64", "s390x": "s390x",
	}[goarch]
	if !ok {
		return "", fmt.Errorf("no Debian architecture for GOARCH=%s (known: amd64, arm64, 386, ppc64le, riscv64, s390x)", goarch)
	}
	return a, nil
}
