package main

import (
	"bytes"
	"debug/buildinfo"
	"fmt"
	"strings"
)

// license is who holds the copyright of a Go module compiled into the
// static binary, and under which license (a short name of Debian's
// machine-readable copyright format).
type license struct {
	prefix    string // module path, or a prefix of module paths ending in "/"
	copyright string
	short     string
}

// moduleLicenses covers every module the agent links (go version -m
// bin/offload-agent). build fails on a module missing here, so a new
// dependency cannot ship without its license in the copyright file.
// Read from each module's LICENSE file.
var moduleLicenses = []license{
	{"github.com/aws/", "Amazon.com, Inc. or its affiliates", "Apache-2.0"}, // aws-sdk-go-v2 and its modules, smithy-go
	{"github.com/beorn7/perks", "2013 Blake Mizerany", "Expat"},
	{"github.com/cespare/xxhash/v2", "2016 Caleb Spare", "Expat"},
	{"github.com/munnerz/goautoneg", "2011 Open Knowledge Foundation Ltd.", "BSD-3-clause"},
	{"github.com/oklog/run", "The oklog/run authors", "Apache-2.0"},
	{"github.com/prometheus/", "The Prometheus Authors", "Apache-2.0"},
	{"golang.org/x/", "The Go Authors", "BSD-3-clause"},
	{"google.golang.org/protobuf", "2018 The Go Authors", "BSD-3-clause"},
}

const copyrightHeader = `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: offload
Source: https://github.com/photosleeve/offload
Comment: /usr/bin/offload-agent is a static Go binary: it contains the Go
 runtime and standard library and the Go modules listed below, each under
 its own license.

Files: *
Copyright: offload maintainers
License: Apache-2.0

Files: go/*
Copyright: The Go Authors
License: BSD-3-clause
Comment: the Go runtime and standard library, linked into the binary.
`

const licenseTexts = `
License: Apache-2.0
 Licensed under the Apache License, Version 2.0 (the "License"); you may not
 use this file except in compliance with the License. You may obtain a copy
 of the License at http://www.apache.org/licenses/LICENSE-2.0
 .
 Unless required by applicable law or agreed to in writing, software
 distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
 WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
 License for the specific language governing permissions and limitations
 under the License.
 .
 On Debian systems, the complete text of the Apache License, Version 2.0
 can be found in "/usr/share/common-licenses/Apache-2.0".

License: BSD-3-clause
 Redistribution and use in source and binary forms, with or without
 modification, are permitted provided that the following conditions are
 met:
 .
 1. Redistributions of source code must retain the above copyright notice,
 this list of conditions and the following disclaimer.
 .
 2. Redistributions in binary form must reproduce the above copyright
 notice, this list of conditions and the following disclaimer in the
 documentation and/or other materials provided with the distribution.
 .
 3. Neither the name of the copyright holder nor the names of its
 contributors may be used to endorse or promote products derived from this
 software without specific prior written permission.
 .
 THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS
 IS" AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO,
 THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR
 PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR
 CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL,
 EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO,
 PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR
 PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF
 LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING
 NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE OF THIS
 SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.

License: Expat
 Permission is hereby granted, free of charge, to any person obtaining a
 copy of this software and associated documentation files (the
 "Software"), to deal in the Software without restriction, including
 without limitation the rights to use, copy, modify, merge, publish,
 distribute, sublicense, and/or sell copies of the Software, and to permit
 persons to whom the Software is furnished to do so, subject to the
 following conditions:
 .
 The above copyright notice and this permission notice shall be included
 in all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS
 OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF
 MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN
 NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
 DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
 OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE
 USE OR OTHER DEALINGS IN THE SOFTWARE.
`

// copyrightFile is /usr/share/doc/offload/copyright in Debian's
// machine-readable format: the project's license, then one paragraph per
// module linked into the binary (named by module path and version, as
// "go version -m" lists them), then the license texts.
func copyrightFile(info *buildinfo.BuildInfo) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(copyrightHeader)
	for _, dep := range info.Deps {
		m := dep
		if dep.Replace != nil {
			m = dep.Replace
		}
		l, ok := licenseOf(m.Path)
		if !ok {
			return nil, fmt.Errorf("the binary links %s, which infra/package/copyright.go's moduleLicenses does not cover: "+
				"add its copyright holder and license (from the module's LICENSE file)", m.Path)
		}
		fmt.Fprintf(&b, "\nFiles: %s/*\nCopyright: %s\nLicense: %s\nComment: Go module %s %s.\n",
			m.Path, l.copyright, l.short, m.Path, m.Version)
	}
	b.WriteString(licenseTexts)
	return b.Bytes(), nil
}

func licenseOf(path string) (license, bool) {
	for _, l := range moduleLicenses {
		if path == l.prefix || (strings.HasSuffix(l.prefix, "/") && strings.HasPrefix(path, l.prefix)) {
			return l, true
		}
	}
	return license{}, false
}
