//! The one sanitizer for text that came from a container, an image or a guest and that
//! hull itself prints, to the operator's terminal or to its logs: error messages the agent
//! or the container's setup reports, a guest's console lines, commands from an image's
//! config in `hull ps`, frames a guest sent that hull logs.
//!
//! Such text may carry terminal control sequences (an ESC that retitles the window,
//! rewrites the screen or, on some terminals, makes the terminal answer into the shell's
//! input), C1 controls some terminals act on, and Unicode bidirectional or invisible
//! characters that make it read differently from what it is. Each of those characters is
//! shown as a visible escape (`\x1b`, `\u{202e}`) instead; everything else passes
//! unchanged. Text is also cut to a length hull chooses, so a guest cannot make one
//! message huge.
//!
//! (A container's own output stream is not text hull prints: it is relayed as is, like
//! docker does; see docs/security.md.)

use std::borrow::Cow;
use std::fmt::Write;

/// Longest guest- or container-provided text hull prints in one message.
pub const MAX_MESSAGE: usize = 4096;

/// Whether `c` must not reach a terminal or a log as is. `keep_lines`: `\n` and `\t` are
/// allowed (multi-line text such as console tails).
fn is_unsafe(c: char, keep_lines: bool) -> bool {
    match c {
        '\n' | '\t' => !keep_lines,
        // C0 controls (ESC, BEL, CR, backspace...), DEL and C1 controls (CSI as U+009B...).
        '\0'..='\x1f' | '\x7f'..='\u{9f}' => true,
        // Bidirectional overrides and isolates, zero-width and invisible formatting
        // characters, the line and paragraph separators, the BOM.
        '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{2069}'
        | '\u{061c}'
        | '\u{feff}' => true,
        _ => false,
    }
}

fn escape(text: &str, keep_lines: bool, max: usize) -> Cow<'_, str> {
    let cut = if text.len() > max {
        // Back to a character boundary.
        (0..=max)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0)
    } else {
        text.len()
    };
    let head = &text[..cut];
    if cut == text.len() && !head.chars().any(|c| is_unsafe(c, keep_lines)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(head.len() + 16);
    for c in head.chars() {
        if !is_unsafe(c, keep_lines) {
            out.push(c);
        } else if (c as u32) < 0x100 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    if cut < text.len() {
        let _ = write!(out, "…[{} more bytes]", text.len() - cut);
    }
    Cow::Owned(out)
}

/// `text` safe for a terminal, newlines and tabs kept, at most [`MAX_MESSAGE`] bytes.
pub fn for_terminal(text: &str) -> Cow<'_, str> {
    escape(text, true, MAX_MESSAGE)
}

/// `text` safe for one line of a terminal or log (newlines escaped too), at most `max`
/// bytes.
pub fn one_line(text: &str, max: usize) -> Cow<'_, str> {
    escape(text, false, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_sequences_become_visible() {
        let hostile = "ok\x1b]0;pwned\x07\x1b[2J\r\u{9b}31m\u{202e}txt.exe\u{200b}\x7f";
        let safe = for_terminal(hostile);
        assert_eq!(
            safe,
            "ok\\x1b]0;pwned\\x07\\x1b[2J\\x0d\\x9b31m\\u{202e}txt.exe\\u{200b}\\x7f"
        );
        assert!(!safe.chars().any(|c| is_unsafe(c, true)));
    }

    #[test]
    fn plain_text_is_untouched_and_lines_are_kept_or_escaped() {
        assert!(matches!(for_terminal("plain, ünïcode ✓"), Cow::Borrowed(_)));
        assert_eq!(for_terminal("a\n\tb"), "a\n\tb");
        assert_eq!(one_line("a\nforged log line", 100), "a\\x0aforged log line");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let long = "é".repeat(10);
        let cut = one_line(&long, 5);
        assert_eq!(cut, "éé…[16 more bytes]");
        assert_eq!(
            for_terminal(&"x".repeat(MAX_MESSAGE + 10)).len(),
            MAX_MESSAGE + 18
        );
    }
}
