//! Maps a field path such as `routes[1].match.host` to the line that holds it,
//! so that validation errors can say `file:line: field: reason`.
//!
//! The YAML crate keeps no positions once a document is deserialised, so this
//! reads the block structure from indentation. Flow collections (`{ a: 1 }`)
//! resolve to the line of their key, which is what a reader needs.

use std::collections::HashMap;

struct Frame {
    indent: usize,
    path: String,
    is_item: bool,
    next_index: usize,
}

/// Line numbers (1-based) by field path.
#[derive(Debug, Default)]
pub struct Locator {
    lines: HashMap<String, usize>,
}

impl Locator {
    pub fn new(text: &str) -> Self {
        let mut lines = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut root_items = 0;
        for (n, raw) in text.lines().enumerate() {
            let line_no = n + 1;
            let content = raw.trim_start();
            if content.is_empty() || content.starts_with('#') || content.starts_with("---") {
                continue;
            }
            let mut col = raw.len() - content.len();
            let mut rest = content;
            loop {
                if rest == "-" || rest.starts_with("- ") {
                    while let Some(top) = stack.last() {
                        if top.indent > col || (top.indent == col && top.is_item) {
                            stack.pop();
                        } else {
                            break;
                        }
                    }
                    let parent_path;
                    let index;
                    match stack.last_mut() {
                        Some(parent) => {
                            parent_path = parent.path.clone();
                            index = parent.next_index;
                            parent.next_index += 1;
                        }
                        None => {
                            // A document that is a list: items are `[i]`.
                            parent_path = String::new();
                            index = root_items;
                            root_items += 1;
                        }
                    }
                    let path = format!("{parent_path}[{index}]");
                    lines.entry(path.clone()).or_insert(line_no);
                    stack.push(Frame {
                        indent: col,
                        path,
                        is_item: true,
                        next_index: 0,
                    });
                    let after = rest[1..].trim_start();
                    col += rest.len() - after.len();
                    rest = after;
                    continue;
                }
                if let Some(key) = mapping_key(rest) {
                    while let Some(top) = stack.last() {
                        if top.indent >= col {
                            stack.pop();
                        } else {
                            break;
                        }
                    }
                    let path = match stack.last() {
                        Some(parent) if !parent.path.is_empty() || parent.is_item => {
                            format!("{}.{}", parent.path, key)
                        }
                        _ => key.to_string(),
                    };
                    lines.entry(path.clone()).or_insert(line_no);
                    stack.push(Frame {
                        indent: col,
                        path,
                        is_item: false,
                        next_index: 0,
                    });
                }
                break;
            }
        }
        Locator { lines }
    }

    /// The line of `path`, or of its nearest ancestor that has one.
    pub fn line(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(l) = self.lines.get(p) {
                return Some(*l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

/// `key:` or `key: value` at the start of `s`; plain or quoted keys only.
fn mapping_key(s: &str) -> Option<&str> {
    let s = s.split(" #").next().unwrap_or(s);
    let (key, _) = if let Some(q) = s.strip_prefix('"') {
        let end = q.find('"')?;
        let after = &q[end + 1..];
        if !after.starts_with(':') {
            return None;
        }
        return Some(&q[..end]);
    } else {
        let idx = s.find(':')?;
        (&s[..idx], ())
    };
    let after = &s[key.len() + 1..];
    if !(after.is_empty() || after.starts_with(' ')) {
        return None;
    }
    if key.is_empty() || key.starts_with(['{', '[', '\'', '&', '*', '!', '|', '>']) {
        return None;
    }
    Some(key.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_fields() {
        let text = "\
listen:
  https: 127.0.0.1:8443
  tls: { cert: a, key: b }
routes:
  - name: one
    match: { path_prefix: /a }
  - name: two
    match:
      path_prefix: /b
keys:
- id: K1
  grants:
    - { namespace: models, actions: [read] }
- id: K2
  owner: x
";
        let l = Locator::new(text);
        assert_eq!(l.line("listen.https"), Some(2));
        assert_eq!(l.line("listen.tls.cert"), Some(3));
        assert_eq!(l.line("routes[0].name"), Some(5));
        assert_eq!(l.line("routes[1].match.path_prefix"), Some(9));
        assert_eq!(l.line("routes[1].upstream"), Some(7));
        assert_eq!(l.line("keys[0].grants[0].actions"), Some(13));
        assert_eq!(l.line("keys[1].owner"), Some(15));
        assert_eq!(l.line("nothing"), None);
    }

    #[test]
    fn top_level_list() {
        let l = Locator::new("- id: a\n  owner: b\n- id: c\n  owner: d\n");
        assert_eq!(l.line("[1].owner"), Some(4));
        assert_eq!(l.line("[0].id"), Some(1));
    }
}
