//! The fast path of [`crate::event`]: a hand-written JSON scanner that hands every string value
//! of one JSON object (nested objects and arrays too, not keys) to a callback, borrowed from the
//! line when it has no escapes and decoded into a reused scratch buffer when it has.
//!
//! It never builds values and never allocates for unescaped strings. It is at most as lenient as
//! `serde_json`: whatever it accepts, `serde_json` accepts with the same string values (a
//! property test checks this against `serde_json` as the oracle). Anything unusual — nesting
//! deeper than [`MAX_DEPTH`], a `\u` escape of a surrogate that is not a well-formed pair,
//! a number with an exponent outside a safe range, and every malformed line — is refused with
//! [`Bail`], and the caller then runs the `serde_json` walk, which decides (and names the error).

/// Refusal of the fast scanner: the caller falls back to the `serde_json` walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bail;

/// Deepest nesting the fast scanner follows (`serde_json` allows 127 levels).
pub(crate) const MAX_DEPTH: u32 = 100;

/// Calls `f` with every string value of the JSON object in `line`; `scratch` holds decoded
/// escaped strings (reuse it between calls). On [`Bail`], `f` may have seen some values.
pub(crate) fn for_each_string<F: FnMut(&str)>(line: &str, scratch: &mut String, f: &mut F) -> Result<(), Bail> {
    let mut s = Scanner { b: line.as_bytes(), src: line, i: 0, scratch };
    s.ws();
    if s.peek() != Some(b'{') {
        return Err(Bail);
    }
    s.i += 1;
    s.object(0, f)?;
    s.ws();
    if s.i == s.b.len() { Ok(()) } else { Err(Bail) }
}

/// Bytes that end the fast run of a string: `"`, `\` and control characters.
static STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

struct Scanner<'l, 's> {
    b: &'l [u8],
    src: &'l str,
    i: usize,
    scratch: &'s mut String,
}

impl Scanner<'_, '_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    #[inline]
    fn expect(&mut self, c: u8) -> Result<(), Bail> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(Bail)
        }
    }

    /// After `{`.
    fn object<F: FnMut(&str)>(&mut self, depth: u32, f: &mut F) -> Result<(), Bail> {
        if depth >= MAX_DEPTH {
            return Err(Bail);
        }
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.expect(b'"')?;
            self.string(&mut |_| {})?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            self.value(depth, f)?;
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(Bail),
            }
        }
    }

    /// After `[`.
    fn array<F: FnMut(&str)>(&mut self, depth: u32, f: &mut F) -> Result<(), Bail> {
        if depth >= MAX_DEPTH {
            return Err(Bail);
        }
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.value(depth, f)?;
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(Bail),
            }
        }
    }

    /// A value starting at the current byte (whitespace skipped), nested one level below `depth`.
    fn value<F: FnMut(&str)>(&mut self, depth: u32, f: &mut F) -> Result<(), Bail> {
        match self.peek() {
            Some(b'"') => {
                self.i += 1;
                self.string(f)
            }
            Some(b'{') => {
                self.i += 1;
                self.object(depth + 1, f)
            }
            Some(b'[') => {
                self.i += 1;
                self.array(depth + 1, f)
            }
            Some(b't') => self.word(b"true"),
            Some(b'f') => self.word(b"false"),
            Some(b'n') => self.word(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(Bail),
        }
    }

    fn word(&mut self, w: &[u8]) -> Result<(), Bail> {
        if self.b[self.i..].starts_with(w) {
            self.i += w.len();
            Ok(())
        } else {
            Err(Bail)
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, refusing magnitudes near the limits of
    /// `f64` (where `serde_json` may refuse the number as out of range).
    fn number(&mut self) -> Result<(), Bail> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let int_digits = match self.peek() {
            Some(b'0') => {
                self.i += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(Bail);
                }
                1
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Bail),
        };
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(Bail);
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(Bail);
            }
            let v: f64 = self.src[start..self.i].parse().map_err(|_| Bail)?;
            if !(1e-300..1e300).contains(&v.abs()) {
                return Err(Bail);
            }
        } else if int_digits > 300 {
            return Err(Bail);
        }
        Ok(())
    }

    /// After the opening `"`: the string up to and including its closing quote.
    fn string<F: FnMut(&str)>(&mut self, f: &mut F) -> Result<(), Bail> {
        let start = self.i;
        let b = self.b;
        let mut i = start;
        while i < b.len() && !STOP[b[i] as usize] {
            i += 1;
        }
        match b.get(i) {
            Some(b'"') => {
                self.i = i + 1;
                // `start` and `i` are ASCII positions, so both are char boundaries.
                f(&self.src[start..i]);
                Ok(())
            }
            Some(b'\\') => {
                self.scratch.clear();
                self.scratch.push_str(&self.src[start..i]);
                self.i = i;
                self.escaped(f)
            }
            _ => Err(Bail),
        }
    }

    /// The rest of a string holding escapes, decoded into `scratch`.
    fn escaped<F: FnMut(&str)>(&mut self, f: &mut F) -> Result<(), Bail> {
        loop {
            let start = self.i;
            let mut i = start;
            while i < self.b.len() && !STOP[self.b[i] as usize] {
                i += 1;
            }
            self.scratch.push_str(&self.src[start..i]);
            self.i = i + 1;
            match self.b.get(i) {
                Some(b'"') => {
                    f(self.scratch);
                    return Ok(());
                }
                Some(b'\\') => {
                    let c = match self.b.get(self.i) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.i += 1;
                            let hi = self.hex4()?;
                            let code = match hi {
                                0xD800..=0xDBFF => {
                                    self.expect(b'\\')?;
                                    self.expect(b'u')?;
                                    let lo = self.hex4()?;
                                    if !(0xDC00..=0xDFFF).contains(&lo) {
                                        return Err(Bail);
                                    }
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                }
                                0xDC00..=0xDFFF => return Err(Bail),
                                _ => hi,
                            };
                            self.scratch.push(char::from_u32(code).ok_or(Bail)?);
                            continue;
                        }
                        _ => return Err(Bail),
                    };
                    self.i += 1;
                    self.scratch.push(c);
                }
                _ => return Err(Bail),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, Bail> {
        let h = self.b.get(self.i..self.i + 4).ok_or(Bail)?;
        let mut v = 0u32;
        for &c in h {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(Bail),
            };
            v = (v << 4) | u32::from(d);
        }
        self.i += 4;
        Ok(v)
    }
}
