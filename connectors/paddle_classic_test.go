package connectors

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/partnerhub/partnerhub/hub"
	"github.com/partnerhub/partnerhub/hub/store/storetest"
)

var paddleClassicTestdata = filepath.Join("..", "testdata", "paddle_classic")

// The fixtures are signed at run time with a fixed key committed for
// tests only, so signatures (PKCS#1 v1.5 is deterministic) and fuzz seeds
// are the same in every process.
var (
	paddleClassicKeyOnce sync.Once
	paddleClassicKey     *rsa.PrivateKey
	paddleClassicKeyErr  error

	paddleClassicOtherOnce sync.Once
	paddleClassicOther     *rsa.PrivateKey
)

func paddleClassicTestKey(tb testing.TB) *rsa.PrivateKey {
	tb.Helper()
	paddleClassicKeyOnce.Do(func() {
		b, err := os.ReadFile(filepath.Join(paddleClassicTestdata, "test_only_rsa_private_key.pem"))
		if err != nil {
			paddleClassicKeyErr = err
			return
		}
		block, _ := pem.Decode(b)
		if block == nil {
			paddleClassicKeyErr = errors.New("no PEM block in the test key file")
			return
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			paddleClassicKeyErr = err
			return
		}
		paddleClassicKey = k.(*rsa.PrivateKey)
	})
	if paddleClassicKeyErr != nil {
		tb.Fatalf("loading the test key: %v", paddleClassicKeyErr)
	}
	return paddleClassicKey
}

// paddleClassicOtherKey is a second key: another vendor's, or the new key
// of a rotation.
func paddleClassicOtherKey(tb testing.TB) *rsa.PrivateKey {
	tb.Helper()
	paddleClassicOtherOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		paddleClassicOther = k
	})
	return paddleClassicOther
}

func pcPublicKeyPEM(tb testing.TB, k *rsa.PrivateKey) string {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		tb.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// pcPair is one form field, in body order.
type pcPair struct{ k, v string }

// pcTestSerialize is an independent, deliberately plain serializer for
// fields with non-numeric names: byte-wise sort, every key and value a
// PHP string with its byte length. (Numeric names are checked against
// PHP itself.)
func pcTestSerialize(ps []pcPair) []byte {
	last := map[string]string{}
	for _, p := range ps {
		if p.k != "p_signature" {
			last[p.k] = p.v // PHP keeps the last of repeated names
		}
	}
	keys := make([]string, 0, len(last))
	for k := range last {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("a:" + strconv.Itoa(len(keys)) + ":{")
	for _, k := range keys {
		b.WriteString("s:" + strconv.Itoa(len(k)) + `:"` + k + `";`)
		b.WriteString("s:" + strconv.Itoa(len(last[k])) + `:"` + last[k] + `";`)
	}
	b.WriteString("}")
	return []byte(b.String())
}

func pcSign(tb testing.TB, k *rsa.PrivateKey, data []byte) string {
	tb.Helper()
	sum := sha1.Sum(data)
	sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA1, sum[:])
	if err != nil {
		tb.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

func pcEncodeForm(ps []pcPair) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = url.QueryEscape(p.k) + "=" + url.QueryEscape(p.v)
	}
	return strings.Join(parts, "&")
}

// pcPairsOf decodes a fixture body (no numeric, repeated or array names).
func pcPairsOf(tb testing.TB, body string) []pcPair {
	tb.Helper()
	var ps []pcPair
	for _, seg := range strings.Split(body, "&") {
		k, v, _ := strings.Cut(seg, "=")
		dk, err1 := url.QueryUnescape(k)
		dv, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			tb.Fatalf("fixture body is not form-encoded: %v %v", err1, err2)
		}
		ps = append(ps, pcPair{dk, dv})
	}
	return ps
}

// pcSignedBody appends the p_signature Paddle would send for ps under k.
func pcSignedBody(tb testing.TB, k *rsa.PrivateKey, ps []pcPair) string {
	tb.Helper()
	return pcEncodeForm(append(slices.Clone(ps), pcPair{"p_signature", pcSign(tb, k, pcTestSerialize(ps))}))
}

// pcCaseForm returns a case's body: a JSON string holding the form body.
func pcCaseForm(tb testing.TB, c connectorCase) string {
	tb.Helper()
	var s string
	if err := json.Unmarshal(c.Body, &s); err != nil {
		tb.Fatalf("case %s: body is not a JSON string: %v", c.Name, err)
	}
	return s
}

func pcFieldOf(ps []pcPair, name string) string {
	for _, p := range ps {
		if p.k == name {
			return p.v
		}
	}
	return ""
}

func pcSource(tb testing.TB) *hub.Source {
	return &hub.Source{
		ID: "src_test", ProgramID: hub.DefaultProgramID, Provider: "paddle_classic",
		Secret: pcPublicKeyPEM(tb, paddleClassicTestKey(tb)),
	}
}

func TestPaddleClassicGolden(t *testing.T) {
	conn := NewPaddleClassic(PaddleClassicConfig{})
	key := paddleClassicTestKey(t)
	for _, c := range loadCases(t, paddleClassicTestdata) {
		t.Run(c.Name, func(t *testing.T) {
			src := pcSource(t)
			src.Options = c.Options
			ps := pcPairsOf(t, pcCaseForm(t, c))
			body := []byte(pcSignedBody(t, key, ps))
			r, err := conn.Verify(src, c.Header(), body, testNow)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := hub.Receipt{DedupeKey: pcFieldOf(ps, "alert_id"), EventType: pcFieldOf(ps, "alert_name")}
			if diff := cmp.Diff(want, r); diff != "" {
				t.Errorf("receipt (-want +got):\n%s", diff)
			}
			ev := &hub.InboundEvent{
				ID: "ie_test", ProgramID: src.ProgramID, SourceID: src.ID, Provider: src.Provider,
				DedupeKey: r.DedupeKey, EventType: r.EventType, Body: body,
				Status: hub.InboundReceived, ReceivedAt: testNow,
			}
			n, err := conn.Normalize(src, ev)
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			checkNormalized(t, n)
			compareGolden(t, c.GoldenPath(), n)
		})
	}
}

func TestPaddleClassicGoldenKeepsEmailsOut(t *testing.T) {
	goldens, err := filepath.Glob(filepath.Join(paddleClassicTestdata, "*.golden.json"))
	if err != nil || len(goldens) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, g := range goldens {
		b, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("@")) {
			t.Errorf("%s contains an email address", g)
		}
	}
}

func TestPaddleClassicVerify(t *testing.T) {
	key := paddleClassicTestKey(t)
	other := paddleClassicOtherKey(t)
	pub, otherPub := pcPublicKeyPEM(t, key), pcPublicKeyPEM(t, other)
	base := []pcPair{
		{"alert_id", "1789000999"}, {"alert_name", "payment_succeeded"}, {"coupon", ""},
		{"customer_name", "Zoë"}, {"order_id", "3498671"}, {"sale_gross", "71.99"},
	}
	sigOf := func(ps []pcPair) string { return pcSign(t, key, pcTestSerialize(ps)) }
	with := func(ps []pcPair, sig string) []byte {
		return []byte(pcEncodeForm(append(slices.Clone(ps), pcPair{"p_signature", sig})))
	}
	valid := with(base, sigOf(base))
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pkcs1 := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&key.PublicKey)}))
	bare := base64.StdEncoding.EncodeToString(der)
	bareWrapped := bare[:64] + "\n" + bare[64:128] + "\r\n" + bare[128:]
	withoutEmpty := slices.DeleteFunc(slices.Clone(base), func(p pcPair) bool { return p.k == "coupon" })
	runeLength := []byte(strings.Replace(string(pcTestSerialize(base)), `s:4:"Zoë"`, `s:3:"Zoë"`, 1))
	arrayStyle := append(slices.Clone(base), pcPair{"items[0]", "x"})
	repeated := append(slices.Clone(base), pcPair{"order_id", "3498671"})
	noAlertID := base[1:]

	tests := []struct {
		name     string
		body     []byte
		secret   string
		previous string
		noSource bool
		wantErr  error
	}{
		{name: "valid", body: valid},
		{name: "fields in another order", body: with(pcReversed(base), sigOf(base))},
		{name: "signature first", body: []byte("p_signature=" + url.QueryEscape(sigOf(base)) + "&" + pcEncodeForm(base))},
		{name: "unpadded base64", body: with(base, strings.TrimRight(sigOf(base), "="))},
		{name: "key as PKCS#1 PEM", body: valid, secret: pkcs1},
		{name: "key pasted without PEM lines", body: valid, secret: bareWrapped},
		{name: "previous key accepted", body: valid, secret: otherPub, previous: pub},
		{name: "current key during rotation", body: valid, secret: pub, previous: otherPub},
		{name: "other vendor's key", body: valid, secret: otherPub, wantErr: hub.ErrBadSignature},
		{name: "signed by another key", body: with(base, pcSign(t, other, pcTestSerialize(base))), wantErr: hub.ErrBadSignature},
		{name: "tampered field", body: bytes.Replace(valid, []byte("sale_gross=71.99"), []byte("sale_gross=719.9"), 1), wantErr: hub.ErrBadSignature},
		{name: "added field", body: append(slices.Clone(valid), "&coupon2=FREE"...), wantErr: hub.ErrBadSignature},
		{name: "missing p_signature", body: []byte(pcEncodeForm(base)), wantErr: hub.ErrBadSignature},
		{name: "empty p_signature", body: with(base, ""), wantErr: hub.ErrBadSignature},
		{name: "p_signature not base64", body: with(base, "not*base64"), wantErr: hub.ErrBadSignature},
		{name: "p_signature with a space", body: with(base, " "+sigOf(base)), wantErr: hub.ErrBadSignature},
		{name: "empty value kept", body: with(base, sigOf(base))},
		{name: "signature without the empty value", body: with(base, sigOf(withoutEmpty)), wantErr: hub.ErrBadSignature},
		{name: "UTF-8 length in bytes", body: with(base, sigOf(base))},
		{name: "UTF-8 length in characters", body: with(base, pcSign(t, key, runeLength)), wantErr: hub.ErrBadSignature},
		{name: "array-style name", body: with(arrayStyle, sigOf(arrayStyle)), wantErr: hub.ErrBadSignature},
		{name: "array-style name encoded", body: append(slices.Clone(valid), "&items%5B%5D=x"...), wantErr: hub.ErrBadSignature},
		{name: "name PHP rewrites", body: with(append(slices.Clone(base), pcPair{"a.b", "x"}), sigOf(append(slices.Clone(base), pcPair{"a.b", "x"}))), wantErr: hub.ErrBadSignature},
		{name: "repeated name", body: with(repeated, sigOf(repeated)), wantErr: hub.ErrBadSignature},
		{name: "repeated p_signature", body: append(slices.Clone(valid), []byte("&p_signature="+url.QueryEscape(sigOf(base)))...), wantErr: hub.ErrBadSignature},
		{name: "empty name", body: append(slices.Clone(valid), "&=x"...), wantErr: hub.ErrBadSignature},
		{name: "numeric names PHP cannot order", body: append(slices.Clone(valid), "&9=a&10=b&1a=c"...), wantErr: hub.ErrBadSignature},
		{name: "non-canonical numeric name", body: append(slices.Clone(valid), "&05=a"...), wantErr: hub.ErrBadSignature},
		{name: "too many fields", body: append(slices.Clone(valid), pcManyFields(1000)...), wantErr: hub.ErrBadSignature},
		{name: "empty body", body: nil, wantErr: hub.ErrBadSignature},
		{name: "JSON body", body: []byte(`{"alert_id":"1"}`), wantErr: hub.ErrBadSignature},
		{name: "key not PEM", body: valid, secret: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", wantErr: hub.ErrBadSignature},
		{name: "key is garbage", body: valid, secret: "paste your key here", wantErr: hub.ErrBadSignature},
		{name: "source without key", body: valid, secret: " ", wantErr: hub.ErrBadSignature},
		{name: "nil source", body: valid, noSource: true, wantErr: hub.ErrBadSignature},
		{name: "verified body without alert_id", body: with(noAlertID, sigOf(noAlertID)), wantErr: hub.ErrUnparsable},
	}
	conn := NewPaddleClassic(PaddleClassicConfig{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var src *hub.Source
			if !tt.noSource {
				src = &hub.Source{Provider: "paddle_classic", Secret: pub, PreviousSecret: tt.previous}
				if tt.secret != "" {
					src.Secret = tt.secret
				}
			}
			r, err := conn.Verify(src, http.Header{}, tt.body, testNow)
			if tt.wantErr != nil {
				wantErrIs(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := hub.Receipt{DedupeKey: "1789000999", EventType: "payment_succeeded"}
			if diff := cmp.Diff(want, r); diff != "" {
				t.Errorf("receipt (-want +got):\n%s", diff)
			}
		})
	}
}

func pcReversed(ps []pcPair) []pcPair {
	out := slices.Clone(ps)
	slices.Reverse(out)
	return out
}

// pcManyFields returns n more "&fN=v" fields.
func pcManyFields(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString("&f" + strconv.Itoa(i) + "=v")
	}
	return b.String()
}

func TestPaddleClassicVerifyErrorsKeepSecretsAndBodyOut(t *testing.T) {
	body := []byte("alert_id=1&alert_name=payment_succeeded&email=jane%40example.com&items%5B0%5D=secretvalue&p_signature=AAAA")
	pub := pcPublicKeyPEM(t, paddleClassicTestKey(t))
	for _, b := range [][]byte{body, bytes.Replace(body, []byte("items%5B0%5D=secretvalue&"), nil, 1)} {
		_, err := NewPaddleClassic(PaddleClassicConfig{}).Verify(&hub.Source{Secret: pub}, http.Header{}, b, testNow)
		if err == nil {
			t.Fatal("want an error")
		}
		for _, leak := range []string{"jane", "secretvalue", "AAAA", "PUBLIC KEY", "alert_id=1"} {
			if strings.Contains(err.Error(), leak) {
				t.Errorf("error %q leaks %q", err, leak)
			}
		}
	}
}

// Serializations PHP 8.2 printed for `ksort($a); echo serialize($a);` of
// the same arrays (values strings).
func TestPaddleClassicSignedData(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string
	}{
		{
			name: "names sorted byte-wise, lengths in bytes",
			body: "b=1&a=2&ab=3&a_=4&A=5&%C3%A9=6&Zed=%C3%BC&empty=",
			want: `a:8:{s:1:"A";s:1:"5";s:3:"Zed";s:2:"ü";s:1:"a";s:1:"2";s:2:"a_";s:1:"4";s:2:"ab";s:1:"3";s:1:"b";s:1:"1";s:5:"empty";s:0:"";s:2:"é";s:1:"6";}`,
		},
		{
			name: "integer names",
			body: "alert_id=a&7=b&2024=c&Zed=d&_x=e&p_signature=ignored",
			want: `a:5:{i:7;s:1:"b";i:2024;s:1:"c";s:3:"Zed";s:1:"d";s:2:"_x";s:1:"e";s:8:"alert_id";s:1:"a";}`,
		},
		{
			name: "negative integer names",
			body: "b=1&a=2&-5=7&-50=8&0=9",
			want: `a:5:{i:-50;s:1:"8";i:-5;s:1:"7";i:0;s:1:"9";s:1:"a";s:1:"2";s:1:"b";s:1:"1";}`,
		},
		{
			name: "largest integer name",
			body: "9223372036854775807=x&a=y",
			want: `a:2:{i:9223372036854775807;s:1:"x";s:1:"a";s:1:"y";}`,
		},
		{
			name: "quotes and separators kept as they are",
			body: "q=%22%3B%7D&s=a%3Ab",
			want: `a:2:{s:1:"q";s:3:"";}";s:1:"s";s:3:"a:b";}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, err := parsePaddleClassicForm([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			got, err := paddleClassicSignedData(fs)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("serialized:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
	for _, body := range []string{"9=1&10=2&1a=3", "05=1", "-0=1", "1e3=1", "%2B1=1", "99999999999999999999=1"} {
		fs, err := parsePaddleClassicForm([]byte(body))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if _, err := paddleClassicSignedData(fs); err == nil {
			t.Errorf("%s: want a refusal", body)
		}
	}
}

func TestPaddleClassicFormDecoding(t *testing.T) {
	tests := []struct {
		body string
		want []paddleClassicField
		err  bool
	}{
		{body: "a=1&&b=&c", want: []paddleClassicField{{"a", "1"}, {"b", ""}, {"c", ""}}},
		{body: "a=x+y%20z%2B", want: []paddleClassicField{{"a", "x y z+"}}},
		{body: "a=100%&b=%zz%4", want: []paddleClassicField{{"a", "100%"}, {"b", "%zz%4"}}},
		{body: "a=1;b=2", want: []paddleClassicField{{"a", "1;b=2"}}},
		{body: "a=b=c", want: []paddleClassicField{{"a", "b=c"}}},
		{body: "a=%00%FF", want: []paddleClassicField{{"a", "\x00\xff"}}},
		{body: "", err: true},
		{body: "&&", err: true},
		{body: "a[]=1", err: true},
		{body: "a%5Bb%5D=1", err: true},
		{body: "a]=1", err: true},
		{body: "a+b=1", err: true},
		{body: "a.b=1", err: true},
		{body: "a%00=1", err: true},
		{body: "a=1&a=2", err: true},
		{body: "=1", err: true},
	}
	for _, tt := range tests {
		got, err := parsePaddleClassicForm([]byte(tt.body))
		if tt.err {
			if err == nil {
				t.Errorf("%q: want an error, got %v", tt.body, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.body, err)
			continue
		}
		if diff := cmp.Diff(tt.want, []paddleClassicField(got), cmp.AllowUnexported(paddleClassicField{})); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tt.body, diff)
		}
	}
}

// paddleClassicPHPScript signs alert fields the way Paddle does: ksort,
// serialize, openssl_sign with SHA-1, then sends the form body.
const paddleClassicPHPScript = `<?php
$in = json_decode(stream_get_contents(STDIN), true, 512, JSON_THROW_ON_ERROR);
$fields = $in['fields'];
ksort($fields);
$data = serialize($fields);
$key = openssl_pkey_get_private($in['private_key']);
if ($key === false || !openssl_sign($data, $sig, $key, OPENSSL_ALGO_SHA1)) {
    fwrite(STDERR, "signing failed: " . openssl_error_string() . "\n");
    exit(1);
}
$fields['p_signature'] = base64_encode($sig);
echo json_encode(['body' => http_build_query($fields), 'serialized' => $data], JSON_THROW_ON_ERROR);
`

// pcRequirePHP returns the php binary, or skips (fails with CI=true) when
// php-cli with the openssl extension is not installed.
func pcRequirePHP(t *testing.T) string {
	t.Helper()
	missing := func(why string) {
		msg := why + ": install php-cli (apt-get install -y php-cli) to cross-check Paddle Classic signatures with PHP"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	php, err := exec.LookPath("php")
	if err != nil {
		missing("php is not installed")
	}
	if out, err := exec.Command(php, "-r", `exit(function_exists("openssl_sign") ? 0 : 3);`).CombinedOutput(); err != nil {
		missing("php has no openssl extension (" + strings.TrimSpace(string(out)) + ")")
	}
	return php
}

// Cross-check with PHP itself: alerts signed by PHP's ksort, serialize and
// openssl_sign verify with ours, byte for byte, and fail once tampered.
func TestPaddleClassicPHP(t *testing.T) {
	php := pcRequirePHP(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "sign.php")
	if err := os.WriteFile(script, []byte(paddleClassicPHPScript), 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	privPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	src := &hub.Source{Provider: "paddle_classic", Secret: pcPublicKeyPEM(t, key)}
	conn := NewPaddleClassic(PaddleClassicConfig{})

	type phpCase struct {
		name   string
		fields map[string]string
		tamper string // a field whose value is changed
	}
	cases := []phpCase{{
		name: "non-ASCII, empty value and numeric names",
		fields: map[string]string{
			"alert_id": "1789000777", "alert_name": "payment_succeeded", "coupon": "",
			"customer_name": "Zoë Ünal 山田 🚀", "product_name": "Café Pro™", "7": "seven", "2024": "year",
			"-3": "minus three", "passthrough": `{"partner":"ACME","note":"a;b&c=d+e%f"}`, "A": "upper",
			"_u": "under", "é": "e-acute", "quote": `"};s:1:"x`,
		},
		tamper: "customer_name",
	}}
	for _, c := range loadCases(t, paddleClassicTestdata) {
		fields := map[string]string{}
		for _, p := range pcPairsOf(t, pcCaseForm(t, c)) {
			fields[p.k] = p.v
		}
		cases = append(cases, phpCase{name: c.Name, fields: fields, tamper: "alert_name"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in, err := json.Marshal(map[string]any{"fields": tc.fields, "private_key": privPEM})
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(php, script)
			cmd.Stdin = bytes.NewReader(in)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("php: %v: %s", err, stderr.String())
			}
			var res struct{ Body, Serialized string }
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("reading php output: %v", err)
			}

			fs, err := parsePaddleClassicForm([]byte(res.Body))
			if err != nil {
				t.Fatalf("parsing PHP's body: %v", err)
			}
			ours, err := paddleClassicSignedData(fs)
			if err != nil {
				t.Fatalf("serializing: %v", err)
			}
			if string(ours) != res.Serialized {
				t.Errorf("serialization differs from PHP's:\n ours %s\n  php %s", ours, res.Serialized)
			}
			r, err := conn.Verify(src, http.Header{}, []byte(res.Body), testNow)
			if err != nil {
				t.Fatalf("our Verify of a PHP-signed alert: %v", err)
			}
			if r.DedupeKey != tc.fields["alert_id"] {
				t.Errorf("DedupeKey = %q, want %q", r.DedupeKey, tc.fields["alert_id"])
			}

			segs := strings.Split(res.Body, "&")
			slices.Reverse(segs)
			if _, err := conn.Verify(src, http.Header{}, []byte(strings.Join(segs, "&")), testNow); err != nil {
				t.Errorf("fields in reverse order: %v", err)
			}
			tampered := url.Values{}
			for _, f := range fs {
				tampered.Set(f.name, f.value)
			}
			tampered.Set(tc.tamper, tampered.Get(tc.tamper)+"x")
			if _, err := conn.Verify(src, http.Header{}, []byte(tampered.Encode()), testNow); !errors.Is(err, hub.ErrBadSignature) {
				t.Errorf("tampered %s: err = %v, want bad signature", tc.tamper, err)
			}
			if _, ok := tc.fields["coupon"]; ok && tc.fields["coupon"] == "" {
				tampered.Set(tc.tamper, tampered.Get(tc.tamper)[:len(tampered.Get(tc.tamper))-1])
				tampered.Del("coupon")
				if _, err := conn.Verify(src, http.Header{}, []byte(tampered.Encode()), testNow); !errors.Is(err, hub.ErrBadSignature) {
					t.Errorf("empty field dropped: err = %v, want bad signature", err)
				}
			}
		})
	}
}

func pcNormalize(t *testing.T, src *hub.Source, ps []pcPair) (*hub.Normalized, error) {
	t.Helper()
	if src == nil {
		src = &hub.Source{Provider: "paddle_classic"}
	}
	return NewPaddleClassic(PaddleClassicConfig{}).Normalize(src, &hub.InboundEvent{Body: []byte(pcEncodeForm(ps))})
}

func pcBasePayment() []pcPair {
	return []pcPair{
		{"alert_id", "1"}, {"alert_name", "payment_succeeded"}, {"order_id", "1001"}, {"checkout_id", "c-1"},
		{"currency", "USD"}, {"sale_gross", "10.00"}, {"payment_tax", "1.00"}, {"event_time", "2024-05-01 10:00:00"},
	}
}

func pcBaseRefund() []pcPair {
	return []pcPair{
		{"alert_id", "2"}, {"alert_name", "payment_refunded"}, {"order_id", "1001"}, {"currency", "USD"},
		{"gross_refund", "5.00"}, {"tax_refund", "0.50"}, {"refund_type", "partial"}, {"event_time", "2024-05-01 11:00:00"},
	}
}

func pcSetField(ps []pcPair, k, v string) []pcPair {
	out := slices.Clone(ps)
	for i := range out {
		if out[i].k == k {
			out[i].v = v
			return out
		}
	}
	return append(out, pcPair{k, v})
}

func pcDropField(ps []pcPair, k string) []pcPair {
	return slices.DeleteFunc(slices.Clone(ps), func(p pcPair) bool { return p.k == k })
}

func TestPaddleClassicNormalizeUnparsable(t *testing.T) {
	pay, ref := pcBasePayment(), pcBaseRefund()
	dispute := []pcPair{
		{"alert_id", "3"}, {"alert_name", "payment_dispute_closed"}, {"order_id", "1001"}, {"currency", "USD"},
		{"amount", "10.00"}, {"status", "closed"}, {"event_time", "2024-05-01 12:00:00"},
	}
	tests := []struct {
		name string
		body []byte
	}{
		{"empty", nil},
		{"no alert_name", []byte("alert_id=1")},
		{"array-style field", []byte(pcEncodeForm(pay) + "&x%5B%5D=1")},
		{"no order_id", []byte(pcEncodeForm(pcDropField(pay, "order_id")))},
		{"no event_time", []byte(pcEncodeForm(pcDropField(pay, "event_time")))},
		{"event_time in another format", []byte(pcEncodeForm(pcSetField(pay, "event_time", "2024-05-01T10:00:00Z")))},
		{"no currency", []byte(pcEncodeForm(pcDropField(pay, "currency")))},
		{"unknown currency", []byte(pcEncodeForm(pcSetField(pay, "currency", "XYZ")))},
		{"no sale_gross", []byte(pcEncodeForm(pcDropField(pay, "sale_gross")))},
		{"no payment_tax", []byte(pcEncodeForm(pcDropField(pay, "payment_tax")))},
		{"amount with a comma", []byte(pcEncodeForm(pcSetField(pay, "sale_gross", "1,000.00")))},
		{"amount as float", []byte(pcEncodeForm(pcSetField(pay, "sale_gross", "1e3")))},
		{"too many decimals", []byte(pcEncodeForm(pcSetField(pay, "sale_gross", "10.005")))},
		{"JPY decimals", []byte(pcEncodeForm(pcSetField(pcSetField(pay, "currency", "JPY"), "sale_gross", "480.5")))},
		{"negative sale", []byte(pcEncodeForm(pcSetField(pay, "sale_gross", "-10.00")))},
		{"tax above gross", []byte(pcEncodeForm(pcSetField(pay, "payment_tax", "11.00")))},
		{"overflowing amount", []byte(pcEncodeForm(pcSetField(pay, "sale_gross", "99999999999999999999")))},
		{"quantity not a number", []byte(pcEncodeForm(pcSetField(pay, "quantity", "two")))},
		{"initial_payment unknown", []byte(pcEncodeForm(pcSetField(pcSetField(pay, "alert_name", "subscription_payment_succeeded"), "initial_payment", "yes")))},
		{"refund without type", []byte(pcEncodeForm(pcDropField(ref, "refund_type")))},
		{"refund of unknown type", []byte(pcEncodeForm(pcSetField(ref, "refund_type", "chargeback")))},
		{"refund without amount", []byte(pcEncodeForm(pcDropField(ref, "gross_refund")))},
		{"refund tax above refund", []byte(pcEncodeForm(pcSetField(ref, "tax_refund", "6.00")))},
		{"refund negative", []byte(pcEncodeForm(pcSetField(ref, "gross_refund", "-5.00")))},
		{"dispute unknown status", []byte(pcEncodeForm(pcSetField(dispute, "status", "teleported")))},
		{"dispute without amount", []byte(pcEncodeForm(pcDropField(dispute, "amount")))},
	}
	conn := NewPaddleClassic(PaddleClassicConfig{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := conn.Normalize(&hub.Source{}, &hub.InboundEvent{Body: tt.body})
			if n != nil {
				t.Errorf("got a result with the error: %+v", n)
			}
			wantErrIs(t, err, hub.ErrUnparsable)
		})
	}
	if _, err := conn.Normalize(&hub.Source{}, nil); !errors.Is(err, hub.ErrUnparsable) {
		t.Errorf("nil event: err = %v", err)
	}
}

func TestPaddleClassicHints(t *testing.T) {
	tests := []struct {
		name        string
		passthrough string
		coupon      string
		options     map[string]string
		want        hub.Hints
	}{
		{name: "plain partner code", passthrough: " ACME ", want: hub.Hints{PartnerCode: "ACME"}},
		{name: "plain click id", passthrough: "clk_01HX", want: hub.Hints{ClickID: "clk_01HX"}},
		{name: "JSON keys", passthrough: `{"ref":"clk_3","partner":"P2","partnerhub_click":"clk_1"}`, want: hub.Hints{ClickID: "clk_1", PartnerCode: "P2"}},
		{name: "JSON number", passthrough: `{"partner":4242}`, want: hub.Hints{PartnerCode: "4242"}},
		{name: "JSON without hint keys", passthrough: `{"user_id":17,"plan":"pro"}`, want: hub.Hints{}},
		{name: "configured keys", passthrough: `{"partner":"IGNORED","aff":"AFF7"}`, options: map[string]string{"hint_keys": "aff"}, want: hub.Hints{PartnerCode: "AFF7"}},
		{name: "invalid JSON", passthrough: `{"partner":`, want: hub.Hints{}},
		{name: "free text", passthrough: "order from the spring campaign", want: hub.Hints{}},
		{name: "JSON array", passthrough: `["ACME"]`, want: hub.Hints{}},
		{name: "too long", passthrough: strings.Repeat("x", 201), want: hub.Hints{}},
		{name: "coupon", coupon: " SPRING20 ", want: hub.Hints{PromoCodes: []string{"SPRING20"}}},
		{name: "nothing", want: hub.Hints{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := pcSetField(pcSetField(pcBasePayment(), "passthrough", tt.passthrough), "coupon", tt.coupon)
			n, err := pcNormalize(t, &hub.Source{Options: tt.options}, ps)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, n.Payment.Hints); diff != "" {
				t.Errorf("hints (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPaddleClassicRefundIDs(t *testing.T) {
	id := func(ps []pcPair) string {
		t.Helper()
		n, err := pcNormalize(t, nil, ps)
		if err != nil {
			t.Fatal(err)
		}
		return n.Refund.ExternalID
	}
	first := pcBaseRefund()
	// The same refund under another alert (another alert_id, the
	// subscription alert's extra fields) is the same refund.
	again := pcSetField(pcSetField(pcSetField(first, "alert_id", "99"), "alert_name", "subscription_payment_refunded"), "balance_gross_refund", "5.00")
	// A second partial refund of the same amount, later, is another one.
	second := pcSetField(pcSetField(first, "alert_id", "3"), "event_time", "2024-05-02 09:30:00")
	// A VAT refund at the same second is another one.
	vat := pcSetField(pcSetField(first, "refund_type", "vat"), "alert_id", "4")
	// "5.0" and "5.00" are the same amount.
	padded := pcSetField(first, "gross_refund", "5.0")

	if id(first) != id(again) {
		t.Errorf("one refund under two alerts: %q and %q", id(first), id(again))
	}
	if id(first) != id(padded) {
		t.Errorf("amount notation changes the id: %q and %q", id(first), id(padded))
	}
	if id(first) == id(second) {
		t.Errorf("two partial refunds share the id %q", id(first))
	}
	if id(first) == id(vat) {
		t.Errorf("a partial and a VAT refund share the id %q", id(first))
	}
}

func TestPaddleClassicRefundBases(t *testing.T) {
	ptr := func(v int64) *int64 { return &v }
	tests := []struct {
		name       string
		ps         []pcPair
		wantAmount int64
		wantBase   *int64
	}{
		{"partial", pcBaseRefund(), 500, ptr(450)},
		{"full", pcSetField(pcSetField(pcSetField(pcBaseRefund(), "refund_type", "full"), "gross_refund", "10.00"), "tax_refund", "1.00"), 1000, ptr(900)},
		{"vat", pcSetField(pcSetField(pcSetField(pcBaseRefund(), "refund_type", "vat"), "gross_refund", "1.00"), "tax_refund", "1.00"), 100, ptr(0)},
		{"vat without tax_refund", pcDropField(pcSetField(pcBaseRefund(), "refund_type", "vat"), "tax_refund"), 500, ptr(0)},
		{"partial without tax_refund: prorated", pcDropField(pcBaseRefund(), "tax_refund"), 500, nil},
		{"amount when gross_refund is absent", pcSetField(pcDropField(pcBaseRefund(), "gross_refund"), "amount", "2.00"), 200, ptr(150)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := pcNormalize(t, nil, tt.ps)
			if err != nil {
				t.Fatal(err)
			}
			if n.Refund.AmountMinor != tt.wantAmount || !cmp.Equal(n.Refund.BaseMinor, tt.wantBase) {
				t.Errorf("amount %d base %v; want %d %v", n.Refund.AmountMinor, n.Refund.BaseMinor, tt.wantAmount, tt.wantBase)
			}
		})
	}
}

func TestPaddleClassicKinds(t *testing.T) {
	sub := pcSetField(pcBasePayment(), "alert_name", "subscription_payment_succeeded")
	for _, tt := range []struct{ initial, want string }{{"1", hub.KindNew}, {"true", hub.KindNew}, {"0", hub.KindRenewal}, {"false", hub.KindRenewal}, {"", ""}} {
		ps := sub
		if tt.initial != "" {
			ps = pcSetField(sub, "initial_payment", tt.initial)
		}
		n, err := pcNormalize(t, nil, ps)
		if err != nil {
			t.Fatal(err)
		}
		if n.Payment.Kind != tt.want {
			t.Errorf("initial_payment %q: kind %q, want %q", tt.initial, n.Payment.Kind, tt.want)
		}
	}
}

func TestPaddleClassicSandbox(t *testing.T) {
	for opt, live := range map[string]bool{"": true, "false": true, "true": false} {
		n, err := pcNormalize(t, &hub.Source{Options: map[string]string{"sandbox": opt}}, pcBasePayment())
		if err != nil {
			t.Fatal(err)
		}
		if n.Livemode != live {
			t.Errorf("sandbox=%q: livemode %v, want %v", opt, n.Livemode, live)
		}
	}
}

func FuzzPaddleClassicVerify(f *testing.F) {
	key := paddleClassicTestKey(f)
	for _, c := range loadCases(f, paddleClassicTestdata) {
		f.Add([]byte(pcSignedBody(f, key, pcPairsOf(f, pcCaseForm(f, c)))))
	}
	f.Add([]byte(""))
	f.Add([]byte("a[]=1&a=2&7=x&10=y&1a=z&p_signature=%%%"))
	f.Add([]byte("alert_id=1&alert_name=x&p_signature=" + strings.Repeat("A", 344)))
	conn := NewPaddleClassic(PaddleClassicConfig{})
	src := &hub.Source{Provider: "paddle_classic", Secret: pcPublicKeyPEM(f, key)}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := conn.Verify(src, http.Header{}, body, testNow)
		if err != nil {
			if !errors.Is(err, hub.ErrBadSignature) && !errors.Is(err, hub.ErrUnparsable) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if r.DedupeKey == "" {
			t.Fatal("accepted without a dedupe key")
		}
		if !bytes.Contains(body, []byte("p_signature=")) {
			t.Fatalf("accepted a body without a signature: %q", body)
		}
	})
}

func FuzzPaddleClassicNormalize(f *testing.F) {
	for _, c := range loadCases(f, paddleClassicTestdata) {
		f.Add([]byte(pcCaseForm(f, c)))
	}
	f.Add([]byte(pcEncodeForm(pcSetField(pcBasePayment(), "passthrough", `{"partner":{"x":1},"ref":[1]}`))))
	f.Add([]byte(pcEncodeForm(pcSetField(pcBaseRefund(), "tax_refund", "9223372036854775807"))))
	conn := NewPaddleClassic(PaddleClassicConfig{})
	src := &hub.Source{Provider: "paddle_classic", Options: map[string]string{"hint_keys": "partner,ref"}}
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := conn.Normalize(src, &hub.InboundEvent{Body: body})
		if err != nil {
			if !errors.Is(err, hub.ErrUnparsable) {
				t.Fatalf("error does not wrap ErrUnparsable: %v", err)
			}
			return
		}
		checkNormalized(t, n)
		if p := n.Payment; p != nil && (p.GrossMinor <= 0 || p.BaseMinor < 0 || p.TaxMinor < 0 || p.BaseMinor > p.GrossMinor) {
			t.Fatalf("payment amounts out of range: %+v", p)
		}
		if r := n.Refund; r != nil {
			if r.AmountMinor < 0 || (r.BaseMinor != nil && (*r.BaseMinor < 0 || *r.BaseMinor > r.AmountMinor)) || r.ExternalID == "" {
				t.Fatalf("refund out of range: %+v", r)
			}
		}
		if d := n.Dispute; d != nil && (d.AmountMinor < 0 || d.ExternalID == "") {
			t.Fatalf("dispute out of range: %+v", d)
		}
	})
}

// TestPaddleClassicLedger feeds signed alerts through the hub, out of
// order and duplicated, and checks the commission to the minor unit: a
// VAT-only refund reverses nothing, a dispute reverses and Paddle's win
// restores, a full refund nets zero.
func TestPaddleClassicLedger(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t)
	prog, err := st.GetProgram(ctx, hub.DefaultProgramID)
	if err != nil {
		t.Fatal(err)
	}
	prog.DefaultCommissionBPS = 1000
	if err := st.UpdateProgram(ctx, prog); err != nil {
		t.Fatal(err)
	}
	if err := st.CreatePartner(ctx, &hub.Partner{ID: hub.NewID("ptn"), ProgramID: hub.DefaultProgramID, Name: "Acme", Code: "ACME"}); err != nil {
		t.Fatal(err)
	}
	src := pcSource(t)
	src.ID = hub.NewID("src")
	if err := st.CreateSource(ctx, src); err != nil {
		t.Fatal(err)
	}
	conn := NewPaddleClassic(PaddleClassicConfig{})
	svc, err := hub.NewService(hub.ServiceConfig{
		Store: st, Queue: paddleNopQueue{},
		Normalizer: func(p string) (hub.Normalizer, bool) { return conn, p == "paddle_classic" },
	})
	if err != nil {
		t.Fatal(err)
	}
	key := paddleClassicTestKey(t)
	net := func() int64 {
		t.Helper()
		cs, err := st.ListCommissions(ctx, hub.DefaultProgramID, hub.Filter{}, hub.Page{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) != 1 {
			return -1
		}
		return cs[0].NetMinor
	}
	steps := []struct {
		alert string
		dup   bool
		net   int64 // -1: no commission yet
	}{
		{"payment_refunded_vat", false, -1},                       // before its sale: parked
		{"payment_succeeded_coupon_json_passthrough", false, 600}, // 10 % of 71.99 − 12.00
		{"payment_succeeded_coupon_json_passthrough", true, 600},
		{"payment_dispute_created", false, 0},
		{"payment_dispute_closed_won", false, 600},
		{"payment_refunded_full", false, 0},
	}
	for i, s := range steps {
		c := loadCase(t, filepath.Join("..", "testdata", "paddle_classic", s.alert+".json"))
		body := []byte(pcSignedBody(t, key, pcPairsOf(t, pcCaseForm(t, c))))
		r, err := conn.Verify(src, c.Header(), body, testNow)
		if err != nil {
			t.Fatalf("step %d %s: verify: %v", i, s.alert, err)
		}
		ev, dup, err := svc.Ingest(ctx, src, r, body)
		if err != nil {
			t.Fatalf("step %d %s: ingest: %v", i, s.alert, err)
		}
		if dup != s.dup {
			t.Fatalf("step %d %s: duplicate = %v, want %v", i, s.alert, dup, s.dup)
		}
		if err := svc.Process(ctx, ev.ID); err != nil {
			t.Fatalf("step %d %s: process: %v", i, s.alert, err)
		}
		if got := net(); got != s.net {
			t.Fatalf("step %d %s: commission net %d, want %d", i, s.alert, got, s.net)
		}
	}
}
