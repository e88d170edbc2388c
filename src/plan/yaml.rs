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
fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_.-=,+@".contains(&b))
        && !s.starts_with(['-', '.'])
        && s.parse::<f64>().is_err()
        && !matches!(s.to_ascii_lowercase().as_str(), "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n");
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("a string serializes")
    }
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
}
