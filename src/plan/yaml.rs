//! A small YAML writer for the compose and Kubernetes renderings: block style, keys in the order
//! given, strings quoted (JSON-style, which YAML accepts) whenever a plain scalar could be misread.

use std::fmt::Write;

/// A YAML document node.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// A mapping, keys in order.
    Map(Vec<(String, Node)>),
    /// A sequence.
    List(Vec<Node>),
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
}

impl Node {
    /// A mapping from `(key, value)` pairs.
    pub fn map<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Node)>) -> Node {
        Node::Map(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A string node.
    pub fn str(s: impl Into<String>) -> Node {
        Node::Str(s.into())
    }

    /// The document as YAML text.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        self.write_block(&mut out, 0);
        out
    }

    fn is_empty_collection(&self) -> bool {
        matches!(self, Node::Map(m) if m.is_empty()) || matches!(self, Node::List(l) if l.is_empty())
    }

    /// Writes a node that starts on its own line at `indent`.
    fn write_block(&self, out: &mut String, indent: usize) {
        let pad = " ".repeat(indent);
        match self {
            Node::Map(pairs) if !pairs.is_empty() => {
                for (key, value) in pairs {
                    let _ = write!(out, "{pad}{}:", scalar(key));
                    value.write_value(out, indent + 2);
                }
            }
            Node::List(items) if !items.is_empty() => {
                for item in items {
                    let _ = write!(out, "{pad}-");
                    match item {
                        // A mapping in a list starts on the dash's line.
                        Node::Map(pairs) if !pairs.is_empty() => {
                            let mut inner = String::new();
                            item.write_block(&mut inner, indent + 2);
                            out.push(' ');
                            out.push_str(&inner[indent + 2..]);
                        }
                        _ => item.write_value(out, indent + 2),
                    }
                }
            }
            other => {
                let _ = writeln!(out, "{pad}{}", other.inline());
            }
        }
    }

    /// Writes a node after `key:` or `-`.
    fn write_value(&self, out: &mut String, indent: usize) {
        match self {
            Node::Map(_) | Node::List(_) if !self.is_empty_collection() => {
                out.push('\n');
                // Lists under a key are indented like the key's children.
                self.write_block(out, indent);
            }
            other => {
                let _ = writeln!(out, " {}", other.inline());
            }
        }
    }

    fn inline(&self) -> String {
        match self {
            Node::Map(_) => "{}".into(),
            Node::List(_) => "[]".into(),
            Node::Str(s) => scalar(s),
            Node::Bool(b) => b.to_string(),
            Node::Int(i) => i.to_string(),
        }
    }
}

/// A string as a YAML scalar: plain when it cannot be misread, double-quoted otherwise.
///
/// Plain only when no YAML 1.1 or 1.2 reader (kubectl's reads 1.1) takes it for anything but a
/// string: not a boolean or null, not starting with an indicator (`@`, `,`, `-`) or `.`, and not
/// with a digit or `+` (integers in any base, `1_000`, floats, timestamps).
fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_.-=,+@".contains(&b))
        && !s.starts_with(['-', '.', '+', '@', ','])
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s != "="
        && s.parse::<f64>().is_err()
        && !matches!(s.to_ascii_lowercase().as_str(), "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n");
    if plain {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if !printable(c) => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether YAML lets `c` stand as itself inside a double-quoted scalar or a comment: printable
/// (YAML 1.1 and 1.2: no C0 or C1 control, no DEL, no BOM, no U+FFFE/U+FFFF) and not a line break
/// (YAML 1.1 also breaks lines at NEL, U+2028 and U+2029, and a quoted line break is folded into a
/// space).
fn printable(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{2027}' | '\u{202a}'..='\u{d7ff}' | '\u{e000}'..='\u{fefe}' | '\u{ff00}'..='\u{fffd}' | '\u{10000}'..)
}

/// Text for a `#` comment (a name in a header line): what could end the line or is not
/// printable is written as a Rust-style escape (`\n`, `\u{85}`), so that nothing after it
/// becomes YAML, or shell, of its own.
pub fn comment(text: &str) -> String {
    text.chars().map(|c| if printable(c) { c.to_string() } else { c.escape_default().to_string() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_yaml() {
        let doc = Node::map([
            ("read_only", Node::Bool(true)),
            ("tmpfs", Node::List(vec![Node::str("/run:uid=1,mode=755")])),
            ("items", Node::List(vec![Node::map([("name", Node::str("a")), ("size", Node::Int(3))])])),
            ("empty", Node::map(Vec::<(String, Node)>::new())),
            ("odd", Node::str("yes")),
        ]);
        assert_eq!(
            doc.to_yaml(),
            "read_only: true\ntmpfs:\n  - \"/run:uid=1,mode=755\"\nitems:\n  - name: a\n    size: 3\nempty: {}\nodd: \"yes\"\n"
        );
    }

    /// Strings a YAML reader would take for something else, or could not read at all, are quoted
    /// and escaped: a path with DEL or a C1 control, or a container named `@`, made a compose file
    /// no YAML parser reads (found by the `plan_render` fuzz target), and names like `0x1f` or
    /// `1_000` are numbers to YAML.
    #[test]
    fn scalars_read_back_as_the_same_strings() {
        assert_eq!(scalar("web"), "web");
        assert_eq!(scalar("/var/lib/x"), "/var/lib/x");
        for number in ["0x1f", "0o17", "0b101", "1_000", "017", "2001-12-14", "+1", "1e3", "=", "@", "@x", ",x"] {
            assert_eq!(scalar(number), format!("\"{number}\""));
        }
        assert_eq!(scalar("/a\u{7f}b\u{85}c\u{2028}\u{feff}\u{1}"), r#""/a\u007fb\u0085c\u2028\ufeff\u0001""#);
        assert_eq!(scalar("q\"b\\n\nt\t"), r#""q\"b\\n\nt\t""#);
        assert_eq!(scalar("caf\u{e9} \u{1f600}"), "\"caf\u{e9} \u{1f600}\"");
        assert_eq!(comment("a\nb\u{85}c\u{e9}"), "a\\nb\\u{85}c\u{e9}");
    }
}
