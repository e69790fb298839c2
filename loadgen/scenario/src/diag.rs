//! Diagnostics: `file:line:col: message`, a source excerpt with a caret, and a hint.

use std::fmt;

use crate::tree::Pos;

/// One problem found in a scenario, located in its file (or in a `--set`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub pos: Pos,
    pub message: String,
    pub hint: Option<String>,
    /// The source line the position points into, for the excerpt.
    pub source_line: Option<String>,
}

impl Diagnostic {
    /// `file:line:col` (or `--set PATH=VALUE` for overrides).
    pub fn location(&self) -> String {
        match &self.pos {
            Pos::At { line, col } => format!("{}:{line}:{col}", self.file),
            Pos::Override(assignment) => format!("--set {assignment}"),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: error: {}", self.location(), self.message)?;
        if let (Pos::At { line, col }, Some(src)) = (&self.pos, &self.source_line) {
            let gutter = line.to_string().len();
            writeln!(f, "{:gutter$} |", "")?;
            writeln!(f, "{line} | {src}")?;
            let pad: String = src
                .chars()
                .take(col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            writeln!(f, "{:gutter$} | {pad}^", "")?;
        }
        if let Some(hint) = &self.hint {
            writeln!(f, "  = hint: {hint}")?;
        }
        Ok(())
    }
}

/// The closest candidate to `word`, when one is close enough to be a typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Splits serde's "…, expected one of `a`, `b`" into the message and the candidates.
pub fn split_expected(message: &str) -> (String, Vec<String>) {
    for marker in [", expected one of ", ", expected "] {
        if let Some((head, tail)) = message.split_once(marker) {
            let candidates: Vec<String> = tail
                .split('`')
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .map(|(_, s)| s.to_owned())
                .collect();
            if !candidates.is_empty() {
                return (head.to_owned(), candidates);
            }
        }
    }
    (message.to_owned(), Vec::new())
}

/// Extracts "(hint: …)" that unit and custom errors append to their message.
pub fn split_hint(message: &str) -> (String, Option<String>) {
    match message.rsplit_once(" (hint: ") {
        Some((head, hint)) if hint.ends_with(')') => {
            (head.to_owned(), Some(hint[..hint.len() - 1].to_owned()))
        }
        _ => (message.to_owned(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let fields = ["name", "duration", "rate"];
        assert_eq!(did_you_mean("durtion", fields), Some("duration"));
        assert_eq!(did_you_mean("zzz", fields), None);
    }

    #[test]
    fn splits_serde_messages() {
        let (head, c) =
            split_expected("unknown field `durtion`, expected one of `name`, `duration`");
        assert_eq!(head, "unknown field `durtion`");
        assert_eq!(c, vec!["name", "duration"]);
        let (head, hint) = split_hint("rate `5` has no unit (hint: write `5/s`)");
        assert_eq!(head, "rate `5` has no unit");
        assert_eq!(hint.as_deref(), Some("write `5/s`"));
    }

    #[test]
    fn renders_location_excerpt_and_hint() {
        let d = Diagnostic {
            file: "s.yaml".into(),
            pos: Pos::At { line: 3, col: 5 },
            message: "bad".into(),
            hint: Some("fix it".into()),
            source_line: Some("  - { x }".into()),
        };
        let text = d.to_string();
        assert!(text.starts_with("s.yaml:3:5: error: bad\n"));
        assert!(text.contains("3 |   - { x }"));
        assert!(text.contains("    ^"));
        assert!(text.contains("hint: fix it"));
    }
}
