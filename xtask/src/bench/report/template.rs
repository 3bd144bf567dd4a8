//! The report's prose: named snippets of `section.md` with `{{name}}` placeholders.
//!
//! A snippet starts after a line `@@ name` and runs, verbatim, to the next such line.
//! A placeholder alone on its line is a block: its value replaces the whole line (newline
//! included), so a value that is empty removes the line and a value of several lines brings
//! its own line ends. Any other placeholder is replaced in place.

use std::collections::BTreeMap;

const SOURCE: &str = include_str!("section.md");

pub struct Snippets {
    by_name: BTreeMap<&'static str, &'static str>,
}

impl Snippets {
    pub fn load() -> Snippets {
        Self::parse(SOURCE)
    }

    fn parse(source: &'static str) -> Snippets {
        let mut by_name = BTreeMap::new();
        // Text before the first marker is the file's own comment.
        let mut current: Option<(&'static str, usize)> = None;
        let mut pos = 0;
        for line in source.split_inclusive('\n') {
            if let Some(name) = line.strip_prefix("@@ ") {
                if let Some((n, start)) = current {
                    by_name.insert(n, &source[start..pos]);
                }
                current = Some((name.trim(), pos + line.len()));
            }
            pos += line.len();
        }
        if let Some((n, start)) = current {
            by_name.insert(n, &source[start..]);
        }
        Snippets { by_name }
    }

    /// Snippet `name` with `vars` filled in. Panics on a snippet or a placeholder that does
    /// not exist: both are mistakes in this program, caught by its tests.
    pub fn fill(&self, name: &str, vars: &[(&str, String)]) -> String {
        let text = self.by_name.get(name).unwrap_or_else(|| panic!("no snippet {name:?} in section.md"));
        let value = |key: &str| -> &str {
            vars.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("snippet {name:?} has {{{{{key}}}}} and no value for it"))
        };
        let mut out = String::with_capacity(text.len() * 2);
        for line in text.split_inclusive('\n') {
            let bare = line.trim_end_matches('\n');
            if let Some(key) = bare.strip_prefix("{{").and_then(|k| k.strip_suffix("}}")).filter(|k| !k.contains("{{"))
            {
                out.push_str(value(key));
                continue;
            }
            let mut rest = line;
            while let Some(a) = rest.find("{{") {
                let Some(b) = rest[a..].find("}}") else { break };
                out.push_str(&rest[..a]);
                out.push_str(value(&rest[a + 2..a + b]));
                rest = &rest[a + b + 2..];
            }
            out.push_str(rest);
        }
        out
    }

    /// A one-line snippet for use inside another line: [`Snippets::fill`] without the line end.
    pub fn inline(&self, name: &str, vars: &[(&str, String)]) -> String {
        let mut s = self.fill(name, vars);
        if s.ends_with('\n') {
            s.pop();
        }
        s
    }

    #[cfg(test)]
    fn names(&self) -> Vec<&'static str> {
        self.by_name.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &str = "comment\n@@ a\nx {{v}} y\n{{block}}\nend\n\n@@ b\none\n";

    #[test]
    fn placeholders_inline_and_as_blocks() {
        let s = Snippets::parse(DEMO);
        assert_eq!(s.fill("a", &[("v", "1".into()), ("block", "l1\nl2\n".into())]), "x 1 y\nl1\nl2\nend\n\n");
        assert_eq!(s.fill("a", &[("v", "1".into()), ("block", String::new())]), "x 1 y\nend\n\n");
        assert_eq!(s.inline("b", &[]), "one");
    }

    #[test]
    #[should_panic(expected = "no value")]
    fn a_placeholder_without_a_value_is_a_mistake() {
        Snippets::parse(DEMO).fill("a", &[("v", "1".into())]);
    }

    #[test]
    fn section_md_has_the_snippets_the_report_uses() {
        let names = Snippets::load().names();
        for n in [
            "section",
            "quick_note",
            "row_failed",
            "ir_row",
            "peak_rss",
            "ir_run",
            "ir_search",
            "counters",
            "cost",
            "cost_program",
            "cost_failed",
            "not_run",
            "stateful_row",
            "population",
            "stateful_run",
            "memory",
            "memory_row",
            "memory_failed",
        ] {
            assert!(names.contains(&n), "section.md lacks {n}");
        }
    }
}
