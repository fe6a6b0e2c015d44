//! Spec diagnostics: every problem found, with its place in the spec.

use std::fmt;
use std::ops::Range;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

/// One problem in a spec: what is wrong, where, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Byte range in the spec source.
    pub span: Range<usize>,
    /// Dotted key path, e.g. `endpoints.synthesize.body`.
    pub key_path: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when there is something to say.
    pub help: Option<String>,
    /// Other places that take part in the problem, e.g. the first
    /// definition of a duplicate name.
    pub secondary: Vec<Label>,
}

/// A secondary place in the spec, with what it has to do with the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// Byte range in the spec source.
    pub span: Range<usize>,
    /// What this place is, e.g. ``first defined here``.
    pub message: String,
}

/// Whether rendered diagnostics carry ANSI colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    /// Plain text: for `compile_error!`, pipes and files.
    Plain,
    /// ANSI colours: for a terminal that shows them.
    Ansi,
}

/// Every problem found in one spec, ready to print against its source.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    file: String,
    source: String,
    items: Vec<Diagnostic>,
}

/// Collects diagnostics while a spec is read; every rule reports here and the
/// caller asks once, at the end, whether anything went wrong.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    items: Vec<Diagnostic>,
}

impl Collector {
    pub(crate) fn error(
        &mut self,
        span: Range<usize>,
        key_path: impl Into<String>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.items.push(Diagnostic {
            span,
            key_path: key_path.into(),
            message: message.into(),
            help: None,
            secondary: Vec::new(),
        });
        self.items.last_mut().expect("just pushed")
    }

    /// How many errors were reported so far.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn has_errors(&self) -> bool {
        !self.items.is_empty()
    }

    pub(crate) fn into_diagnostics(mut self, file: &str, source: &str) -> Diagnostics {
        self.items.sort_by_key(|d| (d.span.start, d.span.end));
        self.items.dedup();
        Diagnostics {
            file: file.to_owned(),
            source: source.to_owned(),
            items: self.items,
        }
    }
}

impl Diagnostic {
    /// Adds a fix hint.
    pub(crate) fn help(&mut self, help: impl Into<String>) -> &mut Self {
        self.help = Some(help.into());
        self
    }

    /// Points at another place that takes part in the problem.
    pub(crate) fn also(&mut self, span: Range<usize>, message: impl Into<String>) -> &mut Self {
        self.secondary.push(Label {
            span,
            message: message.into(),
        });
        self
    }

    /// Adds a "did you mean" hint when a candidate is close to `wrong`.
    pub(crate) fn did_you_mean<'a>(&mut self, wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> &mut Self {
        if let Some(best) = closest(wrong, candidates) {
            self.help = Some(format!("did you mean `{best}`?"));
        }
        self
    }

    /// Adds a hint listing what is allowed, unless a closer hint is already there.
    pub(crate) fn expected_one_of<'a>(
        &mut self,
        wrong: &str,
        allowed: impl IntoIterator<Item = &'a str> + Clone,
    ) -> &mut Self {
        self.did_you_mean(wrong, allowed.clone());
        if self.help.is_none() {
            let list: Vec<String> = allowed.into_iter().map(|a| format!("`{a}`")).collect();
            self.help = Some(if list.is_empty() {
                "nothing is defined here yet".to_owned()
            } else {
                format!("expected one of {}", list.join(", "))
            });
        }
        self
    }
}

impl Diagnostics {
    /// The spec file name as given to the parser.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The problems, in source order.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    /// How many problems there are.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(&self.source, offset)
    }

    /// One diagnostic rendered as plain text with its location and a source
    /// snippet; the first line is `file:line:col: message` (no `error:`
    /// prefix: `compile_error!` and [`Display`](fmt::Display) add their own).
    pub fn render(&self, diagnostic: &Diagnostic) -> String {
        Renderer::plain().render(&[self.group(diagnostic, Level::ERROR.no_name())])
    }

    /// Every diagnostic, each headed `error: file:line:col: message`, and a
    /// closing count; [`Colour::Ansi`] styles it like rustc's output.
    pub fn report(&self, colour: Colour) -> String {
        let renderer = match colour {
            Colour::Plain => Renderer::plain(),
            Colour::Ansi => Renderer::styled(),
        };
        let mut out = String::new();
        for d in &self.items {
            out.push_str(&renderer.render(&[self.group(d, Level::ERROR)]));
            out.push_str("\n\n");
        }
        out.push_str(&format!("{} error(s) in {}", self.items.len(), self.file));
        out
    }

    /// The annotate-snippets form of one diagnostic: the spec's own
    /// `file:line:col` in the title (editors and the README rely on it), the
    /// primary span, the secondary labels, the key path and the help.
    fn group<'a>(&'a self, d: &'a Diagnostic, level: Level<'a>) -> Group<'a> {
        let (line, col) = self.line_col(d.span.start);
        let title = format!("{}:{line}:{col}: {}", self.file, d.message);
        let snippet = Snippet::source(self.source.as_str())
            .annotation(AnnotationKind::Primary.span(self.clamp(&d.span)))
            .annotations(d.secondary.iter().map(|l| {
                AnnotationKind::Context
                    .span(self.clamp(&l.span))
                    .label(l.message.as_str())
            }));
        let mut group = level.primary_title(title).element(snippet);
        if !d.key_path.is_empty() {
            group = group.element(Level::NOTE.message(format!("in `{}`", d.key_path)));
        }
        if let Some(help) = &d.help {
            group = group.element(Level::HELP.message(help.as_str()));
        }
        group
    }

    /// A span cut to its first line (a table's span would otherwise draw
    /// the whole table), to the source and to character boundaries, so that
    /// a span from a bad offset still renders.
    fn clamp(&self, span: &Range<usize>) -> Range<usize> {
        let boundary = |mut i: usize| {
            i = i.min(self.source.len());
            while !self.source.is_char_boundary(i) {
                i -= 1;
            }
            i
        };
        let start = boundary(span.start);
        let line_end = self.source[start..].find('\n').map_or(self.source.len(), |i| start + i);
        start..boundary(span.end).clamp(start, line_end)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.report(Colour::Plain))
    }
}

impl std::error::Error for Diagnostics {}

fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, source[line_start..offset].chars().count() + 1)
}

/// The candidate closest to `wrong` by edit distance, if it is close enough
/// to be a likely typo.
pub(crate) fn closest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (wrong.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| {
            let (w, c_low) = (wrong.to_lowercase(), c.to_lowercase());
            // A key written without its unit suffix (`timeout` for `timeout_ms`) is a typo too.
            let prefix = w.len() >= 4 && c_low.starts_with(&w);
            (if prefix { 1 } else { edit_distance(&w, &c_low) }, c)
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, counting a swap of two neighbours as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, src.find('=').unwrap()), (1, 3));
        let second_eq = src.rfind('=').unwrap();
        assert_eq!(line_col(src, second_eq), (2, 4));
    }

    #[test]
    fn closest_finds_typos_but_not_strangers() {
        let keys = ["retry", "timeout_ms", "rate_limit"];
        assert_eq!(closest("retyr", keys), Some("retry"));
        assert_eq!(closest("timeout", keys), Some("timeout_ms"));
        assert_eq!(closest("banana", keys), None);
    }

    #[test]
    fn render_points_at_the_span() {
        let mut c = Collector::default();
        c.error(6..11, "policy.retyr", "unknown key `retyr`")
            .help("did you mean `retry`?");
        let d = c.into_diagnostics("x.toml", "[a]\n\n\nretyr = 1\n");
        // span 6..11 is on line 4? "[a]\n" is 4 bytes, "\n" 5, "\n" 6 -> line 4 col 1
        let text = d.render(d.iter().next().unwrap());
        assert!(text.starts_with("x.toml:4:1: unknown key `retyr`"), "{text}");
        assert!(text.contains("4 | retyr = 1\n  | ^^^^^"), "{text}");
        assert!(text.ends_with("help: did you mean `retry`?"), "{text}");
    }
}
