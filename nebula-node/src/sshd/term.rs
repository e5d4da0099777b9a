//! The console's line editor for interactive sessions: turns the bytes an SSH client's terminal
//! sends into finished lines and the bytes that echo and redraw them (arrows, history, tab).
//!
//! It knows nothing of SSH or commands: completion is a function handed in.

/// Most characters one line may hold (longer input is ignored until Enter).
pub const MAX_LINE: usize = 4096;
/// Lines kept for the up/down arrows.
pub const MAX_HISTORY: usize = 100;

/// What the editor made of some input.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Feed {
    /// Bytes to send back to the client (echo, redraws, completion lists).
    pub echo: Vec<u8>,
    /// Lines the user finished with Enter, in order.
    pub lines: Vec<String>,
    /// Ctrl-D on an empty line: the user wants out.
    pub eof: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC.
    Esc,
    /// After ESC [ (with any digits so far).
    Csi,
}

/// One interactive session's line state.
pub struct LineEditor {
    prompt: String,
    line: Vec<char>,
    pos: usize,
    history: Vec<String>,
    /// Where the arrows are in `history` (`history.len()`: the line being typed).
    hist_pos: usize,
    escape: Escape,
    csi: String,
    /// Bytes of a UTF-8 character not complete yet.
    partial: Vec<u8>,
    last_was_cr: bool,
}

impl LineEditor {
    pub fn new(prompt: impl Into<String>) -> LineEditor {
        LineEditor {
            prompt: prompt.into(),
            line: Vec::new(),
            pos: 0,
            history: Vec::new(),
            hist_pos: 0,
            escape: Escape::None,
            csi: String::new(),
            partial: Vec::new(),
            last_was_cr: false,
        }
    }

    /// The prompt, to write when the shell starts.
    pub fn prompt(&self) -> &str {
        &self.prompt
    }

    /// Redraw the prompt and line, cursor in place (after a command's output).
    pub fn render(&self, out: &mut Vec<u8>) {
        self.redraw(out);
    }

    /// Redraw the prompt and line, cursor in place.
    fn redraw(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\r");
        out.extend_from_slice(self.prompt.as_bytes());
        let text: String = self.line.iter().collect();
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\x1b[K");
        let back = self.line.len() - self.pos;
        if back > 0 {
            out.extend_from_slice(format!("\x1b[{back}D").as_bytes());
        }
    }

    fn set_line(&mut self, s: &str) {
        self.line = s.chars().collect();
        self.pos = self.line.len();
    }

    /// Feed what the client sent; `complete` lists the command names starting with a prefix.
    pub fn feed(&mut self, data: &[u8], complete: &dyn Fn(&str) -> Vec<&'static str>) -> Feed {
        let mut f = Feed::default();
        for &b in data {
            let cr = self.last_was_cr;
            self.last_was_cr = b == b'\r';
            match self.escape {
                Escape::Esc => {
                    self.escape = if b == b'[' || b == b'O' {
                        self.csi.clear();
                        Escape::Csi
                    } else {
                        Escape::None
                    };
                    continue;
                }
                Escape::Csi => {
                    if b.is_ascii_digit() || b == b';' {
                        if self.csi.len() < 8 {
                            self.csi.push(b as char);
                        }
                        continue;
                    }
                    self.escape = Escape::None;
                    self.csi_key(b, &mut f);
                    continue;
                }
                Escape::None => {}
            }
            match b {
                0x1b => self.escape = Escape::Esc,
                b'\r' | b'\n' => {
                    // CR LF from some clients is one Enter.
                    if b == b'\n' && cr {
                        continue;
                    }
                    let text: String = self.line.iter().collect();
                    f.echo.extend_from_slice(b"\r\n");
                    if !text.trim().is_empty() {
                        if self.history.len() >= MAX_HISTORY {
                            self.history.remove(0);
                        }
                        self.history.push(text.clone());
                    }
                    self.hist_pos = self.history.len();
                    self.line.clear();
                    self.pos = 0;
                    f.lines.push(text);
                }
                0x7f | 0x08 => {
                    if self.pos > 0 {
                        self.pos -= 1;
                        self.line.remove(self.pos);
                        self.redraw(&mut f.echo);
                    }
                }
                b'\t' => self.tab(&mut f, complete),
                0x01 => {
                    self.pos = 0;
                    self.redraw(&mut f.echo);
                }
                0x05 => {
                    self.pos = self.line.len();
                    self.redraw(&mut f.echo);
                }
                0x02 => self.left(&mut f),
                0x06 => self.right(&mut f),
                0x03 => {
                    f.echo.extend_from_slice(b"^C\r\n");
                    self.line.clear();
                    self.pos = 0;
                    self.redraw(&mut f.echo);
                }
                0x04 => {
                    if self.line.is_empty() {
                        f.eof = true;
                        return f;
                    }
                    if self.pos < self.line.len() {
                        self.line.remove(self.pos);
                        self.redraw(&mut f.echo);
                    }
                }
                0x0b => {
                    self.line.truncate(self.pos);
                    self.redraw(&mut f.echo);
                }
                0x15 => {
                    self.line.drain(..self.pos);
                    self.pos = 0;
                    self.redraw(&mut f.echo);
                }
                0x17 => {
                    let mut start = self.pos;
                    while start > 0 && self.line[start - 1] == ' ' {
                        start -= 1;
                    }
                    while start > 0 && self.line[start - 1] != ' ' {
                        start -= 1;
                    }
                    self.line.drain(start..self.pos);
                    self.pos = start;
                    self.redraw(&mut f.echo);
                }
                0x0c => {
                    f.echo.extend_from_slice(b"\x1b[H\x1b[2J");
                    self.redraw(&mut f.echo);
                }
                b if b < 0x20 => {}
                b => self.byte(b, &mut f),
            }
        }
        f
    }

    fn byte(&mut self, b: u8, f: &mut Feed) {
        self.partial.push(b);
        let c = match std::str::from_utf8(&self.partial) {
            Ok(s) => s.chars().next(),
            Err(e) if e.error_len().is_none() && self.partial.len() < 4 => return,
            Err(_) => None,
        };
        self.partial.clear();
        let Some(c) = c else {
            return;
        };
        if self.line.len() >= MAX_LINE {
            return;
        }
        self.line.insert(self.pos, c);
        self.pos += 1;
        if self.pos == self.line.len() {
            let mut buf = [0u8; 4];
            f.echo.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        } else {
            self.redraw(&mut f.echo);
        }
    }

    fn left(&mut self, f: &mut Feed) {
        if self.pos > 0 {
            self.pos -= 1;
            f.echo.extend_from_slice(b"\x1b[D");
        }
    }

    fn right(&mut self, f: &mut Feed) {
        if self.pos < self.line.len() {
            self.pos += 1;
            f.echo.extend_from_slice(b"\x1b[C");
        }
    }

    fn csi_key(&mut self, b: u8, f: &mut Feed) {
        match (b, self.csi.as_str()) {
            (b'A', _) if self.hist_pos > 0 => {
                self.hist_pos -= 1;
                let s = self.history.get(self.hist_pos).cloned().unwrap_or_default();
                self.set_line(&s);
                self.redraw(&mut f.echo);
            }
            (b'B', _) if self.hist_pos < self.history.len() => {
                self.hist_pos += 1;
                let s = self.history.get(self.hist_pos).cloned().unwrap_or_default();
                self.set_line(&s);
                self.redraw(&mut f.echo);
            }
            (b'C', _) => self.right(f),
            (b'D', _) => self.left(f),
            (b'H', _) | (b'~', "1") | (b'~', "7") => {
                self.pos = 0;
                self.redraw(&mut f.echo);
            }
            (b'F', _) | (b'~', "4") | (b'~', "8") => {
                self.pos = self.line.len();
                self.redraw(&mut f.echo);
            }
            (b'~', "3") if self.pos < self.line.len() => {
                self.line.remove(self.pos);
                self.redraw(&mut f.echo);
            }
            _ => {}
        }
    }

    /// Tab: one match completes the line (with a space after), several are listed.
    fn tab(&mut self, f: &mut Feed, complete: &dyn Fn(&str) -> Vec<&'static str>) {
        let text: String = self.line.iter().collect();
        let matches = complete(&text);
        match matches.as_slice() {
            [] => {}
            [one] => {
                self.set_line(&format!("{one} "));
                self.redraw(&mut f.echo);
            }
            many => {
                f.echo.extend_from_slice(b"\r\n");
                f.echo.extend_from_slice(many.join("\r\n").as_bytes());
                f.echo.extend_from_slice(b"\r\n\r\n");
                self.redraw(&mut f.echo);
            }
        }
    }
}

/// Terminal output: every `\n` becomes `\r\n` (a pty in raw mode does not do it).
pub fn crlf(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 16);
    for &b in text {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(prefix: &str) -> Vec<&'static str> {
        [
            "list-hostmap",
            "list-pending-hostmap",
            "log-level",
            "version",
        ]
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
    }

    #[test]
    fn typed_lines_come_out_with_edits_applied() {
        let mut e = LineEditor::new("u@nebula > ");
        // "versio", left, backspace (drops the i), retype it, right, "n", Enter (CR LF).
        let f = e.feed(b"versio\x1b[D\x7fi\x1b[Cn\r\n", &names);
        assert_eq!(f.lines, vec!["version".to_string()], "{:?}", f);
        let f = e.feed(b"abc\x01x\x05y\x17done\r", &names);
        assert_eq!(f.lines, vec!["done".to_string()]);
        // History: up twice gives the first line back.
        let f = e.feed(b"\x1b[A\x1b[A\r", &names);
        assert_eq!(f.lines, vec!["version".to_string()]);
        assert!(e.feed(b"\x04", &names).eof);
        assert!(!e.feed(b"x\x04", &names).eof, "Ctrl-D on a non-empty line");
    }

    #[test]
    fn tab_completes_one_match_and_lists_many() {
        let mut e = LineEditor::new("> ");
        let f = e.feed(b"ver\t\r", &names);
        assert_eq!(f.lines, vec!["version ".to_string()]);
        let f = e.feed(b"list-\t", &names);
        let shown = String::from_utf8_lossy(&f.echo).to_string();
        assert!(
            shown.contains("list-hostmap\r\nlist-pending-hostmap\r\n"),
            "{shown:?}"
        );
        let f = e.feed(b"x\t\r", &names);
        assert_eq!(f.lines, vec!["list-x".to_string()], "no match: unchanged");
    }

    #[test]
    fn long_lines_and_broken_utf8_are_bounded() {
        let mut e = LineEditor::new("> ");
        let big = vec![b'a'; MAX_LINE + 100];
        let mut f = e.feed(&big, &names);
        f = Feed {
            lines: e.feed(b"\xff\xc3\xa9\r", &names).lines,
            ..f
        };
        assert_eq!(f.lines[0].chars().count(), MAX_LINE);
        assert_eq!(crlf(b"a\nb"), b"a\r\nb");
    }
}
