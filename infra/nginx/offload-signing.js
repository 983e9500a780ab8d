// offload: signed links on the nginx side, an njs module (nginx's
// ngx_http_js_module, Debian's libnginx-mod-http-js, njs 0.7.9 or later)
// used by offload-signing.conf. See that file for how to set it up.
//
// It makes signing.go's decision (offload.VerifyLink) on the request as the
// browser sent it: HMAC-SHA256 over "offload-link-v1\n<rel>\n<exp>", rel the
// path below /static/ decoded segment by segment as Mapping.KeyForURL
// decodes it, exp the query's Unix time written back as a decimal integer,
// sig the query's hex, compared in constant time; expired once the server's
// clock is past exp. crypto.createHmac is njs's
// (https://nginx.org/en/docs/njs/reference.html#crypto), the key
// process.env.OFFLOAD_SIGNING_KEY, which nginx passes to its workers only
// when the main configuration says "env OFFLOAD_SIGNING_KEY;"
// (https://nginx.org/en/docs/ngx_core_module.html#env).

var crypto = require('crypto');

// minKeyBytes is offload.MinSigningKeyBytes.
var minKeyBytes = 16;

// unescape is url.PathUnescape (plus: url.QueryUnescape, "+" a space);
// null for a bad escape. decodeURIComponent also refuses an escape that
// is not UTF-8, which is no name a link is ever signed for.
function unescape(s, plus) {
    if (plus) {
        s = s.replace(/\+/g, ' ');
    }
    try {
        return decodeURIComponent(s);
    } catch (e) {
        return null;
    }
}

// linkRel is Mapping.KeyForURL's decoding of the raw path: null outside
// /static/, for a bad escape, an encoded "/" or an empty, "." or ".."
// segment, all of which the mapping refuses too.
function linkRel(path) {
    if (path.indexOf('/static/') !== 0) {
        return null;
    }
    var segs = path.slice('/static/'.length).split('/');
    for (var i = 0; i < segs.length; i++) {
        var d = unescape(segs[i], false);
        if (d === null || d === '' || d === '.' || d === '..' || d.indexOf('/') >= 0) {
            return null;
        }
        segs[i] = d;
    }
    return segs.join('/');
}

// linkQuery is url.ParseQuery's first exp and sig: pairs split on "&", one
// with a ";" or a bad escape skipped. Only the first of each counts (Go's
// Values.Get), so the reading stops once both are found; and only the
// value of a pair whose key is "exp" or "sig" (linkKey) is decoded. A
// huge query costs a split and a few comparisons per pair (njs's regular
// expressions and decodeURIComponent cost microseconds each).
function linkQuery(q) {
    var v = {};
    var parts = q.split('&');
    for (var i = 0; i < parts.length && (v.exp === undefined || v.sig === undefined); i++) {
        var part = parts[i];
        var eq = part.indexOf('=');
        var k = linkKey(eq < 0 ? part : part.slice(0, eq));
        if (k === null || v[k] !== undefined || part.indexOf(';') >= 0) {
            continue;
        }
        var val = unescape(eq < 0 ? '' : part.slice(eq + 1), true);
        if (val !== null) {
            v[k] = val;
        }
    }
    return v;
}

// linkKey is "exp" or "sig" when url.QueryUnescape turns raw into it, else
// null: each letter as itself or percent-encoded (%65 %78 %70, %73 %69
// %67: no hex letter in them, so no case to fold; "E" is %45, not "e").
function linkKey(raw) {
    if (raw.length < 3 || raw.length > 9) {
        return null;
    }
    var names = ['exp', 'sig'];
    for (var n = 0; n < names.length; n++) {
        var name = names[n];
        var j = 0;
        var c = 0;
        for (; c < 3 && j < raw.length; c++) {
            if (raw[j] === name[c]) {
                j++;
            } else if (raw[j] === '%' && raw.slice(j + 1, j + 3) === name.charCodeAt(c).toString(16)) {
                j += 3;
            } else {
                break;
            }
        }
        if (c === 3 && j === raw.length) {
            return name;
        }
    }
    return null;
}

// linkExp is strconv.ParseInt(exp, 10, 64) written back with %d, which is
// what the MAC covers ("+01" is 1); null when it is no int64.
function linkExp(exp) {
    var m = /^([+-]?)([0-9]+)$/.exec(exp || '');
    if (!m) {
        return null;
    }
    var digits = m[2].replace(/^0+/, '');
    if (digits === '') {
        return '0';
    }
    var max = m[1] === '-' ? '9223372036854775808' : '9223372036854775807';
    if (digits.length > 19 || (digits.length === 19 && digits > max)) {
        return null;
    }
    return (m[1] === '-' ? '-' : '') + digits;
}

// sameHex compares two hex strings of 64 digits without stopping at the
// first difference (hmac.Equal).
function sameHex(a, b) {
    a = a.toLowerCase();
    b = b.toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(b)) {
        return false;
    }
    var diff = 0;
    for (var i = 0; i < 64; i++) {
        diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
    }
    return diff === 0;
}

// allowed is the value of $offload_link_allowed: "ok " for a request not
// under /static/ (as nginx resolved it), "ok " and the URI for one that
// carries a valid, unexpired link for the path it was sent with when that
// path is the one nginx resolved (so the file served is always the file
// signed); "" for any other. offload-signing.conf refuses all but "ok "
// and the URI under /static/ as it is when the check runs: a runtime
// error here leaves the variable empty (njs's js_set), which is refused
// (TestSignedLinkCheckFailsClosed), and a verdict njs kept from before an
// internal redirect into /static/ names another URI, which is refused too
// (TestSignedLinksAfterAnInternalRedirect).
function allowed(r) {
    if (r.uri.indexOf('/static/') !== 0) {
        return 'ok ';
    }
    var key = process.env.OFFLOAD_SIGNING_KEY;
    if (!key || key.length < minKeyBytes) {
        r.error('offload-signing.js: OFFLOAD_SIGNING_KEY is not set, or shorter than 16 bytes, or missing "env OFFLOAD_SIGNING_KEY;" in the main configuration; every /static/ request is refused');
        return '';
    }
    var target = r.variables.request_uri;
    var q = target.indexOf('?');
    var rel = linkRel(q < 0 ? target : target.slice(0, q));
    if (rel === null || '/static/' + rel !== r.uri) {
        return '';
    }
    var v = linkQuery(q < 0 ? '' : target.slice(q + 1));
    var exp = linkExp(v.exp);
    if (exp === null || typeof v.sig !== 'string' || v.sig.length !== 64) {
        return '';
    }
    var mac = crypto.createHmac('sha256', key).update('offload-link-v1\n' + rel + '\n' + exp).digest('hex');
    if (!sameHex(mac, v.sig)) {
        return '';
    }
    return Math.floor(Date.now() / 1000) > Number(exp) ? '' : 'ok ' + r.uri;
}

// here is the value of $offload_link_here: "ok " and the URI as it is when
// offload.conf's /static/ location first asks for it, after every rewrite.
// That location refuses a request whose verdict ($offload_link_allowed,
// made when the server-level check first asked) is not this: a request
// that reached /static/ by a rewrite after the check was judged for
// another URI (TestSignedLinksAfterTheSitesOwnRewrite).
function here(r) {
    return 'ok ' + r.uri;
}

export default {allowed, here};
