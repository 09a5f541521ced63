//! The flow expression: Graflow's operators as text.
//!
//! ```text
//! flow     := parallel ( SEP parallel )*          -- SEP: ";" or a new line
//! parallel := sequence ( "|" sequence )*      -- lowest precedence, as in Python
//! sequence := atom ( ">>" atom )*
//! atom     := NAME | "(" parallel ")"
//! NAME     := [A-Za-z_][A-Za-z0-9_-]*
//! ```
//!
//! `a >> b` adds the edge a→b (from the last node of the left side to the first
//! node of the right side). `a | b` makes a parallel group whose members are the
//! first nodes of its operands; the rest of an operand's chain runs inside that
//! member's branch. A name used twice is one node, so `agent >> tool >> agent` is
//! a cycle, and several statements add edges to one graph (`a >> b; a >> c`
//! fans out from `a` without a join). A parenthesised group used as an operand of `|` merges into the
//! enclosing group.

use std::collections::HashSet;
use std::fmt;

/// Deepest nesting of parentheses in a flow. The parser recurses once per
/// level, so the bound also bounds its stack.
pub const MAX_DEPTH: usize = 32;

/// A flow syntax error, with the 1-based line and column it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowError {
    /// 1-based line of the offending token.
    pub line: usize,
    /// 1-based column (in characters) of the offending token on its line.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// The flow text, for the caret display.
    pub flow: String,
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = self.flow.lines().nth(self.line.saturating_sub(1)).unwrap_or("");
        // A long line is shown as a window around the column.
        let chars: Vec<char> = full.chars().collect();
        let start = self.column.saturating_sub(1).saturating_sub(40);
        let end = (self.column + 40).min(chars.len());
        let text: String = chars.get(start..end).map(|c| c.iter().collect()).unwrap_or_default();
        let column = self.column - start;
        let place = if self.flow.lines().count() > 1 {
            format!("line {}, column {}", self.line, self.column)
        } else {
            format!("column {}", self.column)
        };
        write!(
            f,
            "flow syntax error at {place}: {}\n  {text}\n  {}^",
            self.message,
            " ".repeat(column.saturating_sub(1))
        )
    }
}

impl std::error::Error for FlowError {}

/// The graph a flow describes: names only, before tasks are resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowGraph {
    /// Task names, in order of first appearance.
    pub tasks: Vec<String>,
    /// Parallel groups: generated name (`group_<n>`, numbered in the order the
    /// groups close) and member node names.
    pub groups: Vec<(String, Vec<String>)>,
    /// Edges between nodes (tasks or groups), in the order they were written.
    pub edges: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Seq,
    Par,
    Open,
    Close,
    Sep,
}

fn describe(tok: Option<&(Tok, usize)>) -> String {
    match tok {
        None => "the end of the flow".into(),
        Some((Tok::Name(n), _)) => format!("task name '{n}'"),
        Some((Tok::Seq, _)) => "'>>'".into(),
        Some((Tok::Par, _)) => "'|'".into(),
        Some((Tok::Open, _)) => "'('".into(),
        Some((Tok::Close, _)) => "')'".into(),
        Some((Tok::Sep, _)) => "the end of the statement".into(),
    }
}

fn tokenize(flow: &str) -> Result<Vec<(Tok, usize)>, (usize, String)> {
    let chars: Vec<char> = flow.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        match c {
            '\n' | ';' => {
                toks.push((Tok::Sep, col));
                i += 1
            }
            c if c.is_whitespace() => i += 1,
            '(' => {
                toks.push((Tok::Open, col));
                i += 1
            }
            ')' => {
                toks.push((Tok::Close, col));
                i += 1
            }
            '|' => {
                toks.push((Tok::Par, col));
                i += 1
            }
            '>' if chars.get(i + 1) == Some(&'>') => {
                toks.push((Tok::Seq, col));
                i += 2
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '-') {
                    i += 1;
                }
                toks.push((Tok::Name(chars[start..i].iter().collect()), col));
            }
            '>' => return Err((col, "'>' must be written '>>'".into())),
            '<' if chars.get(i + 1) == Some(&'<') => {
                return Err((col, "'<<' is not supported; write the flow left to right with '>>'".into()));
            }
            other => {
                return Err((
                    col,
                    format!("unexpected character '{other}'; a flow uses task names, '>>', '|' and parentheses"),
                ));
            }
        }
    }
    Ok(toks)
}

/// A parsed fragment: its first and last node, and whether it is a bare group
/// that may merge into an enclosing group.
#[derive(Clone)]
struct Frag {
    first: String,
    last: String,
    bare_group: Option<usize>,
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    /// Open parentheses around the current token.
    depth: usize,
    /// Names already in `out.tasks` (keeps parsing linear).
    seen: HashSet<String>,
    end_col: usize,
    out: FlowGraph,
    /// Indices into `out.groups` of groups merged away (removed at the end).
    merged: Vec<usize>,
}

impl Parser {
    fn peek(&self) -> Option<&(Tok, usize)> {
        self.toks.get(self.pos)
    }
    fn col(&self) -> usize {
        self.peek().map(|t| t.1).unwrap_or(self.end_col)
    }

    fn parallel(&mut self) -> Result<Frag, (usize, String)> {
        let first = self.sequence()?;
        if !matches!(self.peek(), Some((Tok::Par, _))) {
            return Ok(first);
        }
        let mut members = Vec::new();
        let add = |frag: Frag, members: &mut Vec<String>, merged: &mut Vec<usize>, groups: &[(String, Vec<String>)]| {
            match frag.bare_group {
                Some(g) => {
                    members.extend(groups[g].1.iter().cloned());
                    merged.push(g);
                }
                None => members.push(frag.first),
            }
        };
        add(first, &mut members, &mut self.merged, &self.out.groups);
        while matches!(self.peek(), Some((Tok::Par, _))) {
            self.pos += 1;
            let next = self.sequence()?;
            add(next, &mut members, &mut self.merged, &self.out.groups);
        }
        let index = self.out.groups.len();
        self.out.groups.push((String::new(), members));
        Ok(Frag { first: format!("\0{index}"), last: format!("\0{index}"), bare_group: Some(index) })
    }

    fn sequence(&mut self) -> Result<Frag, (usize, String)> {
        let mut frag = self.atom()?;
        while matches!(self.peek(), Some((Tok::Seq, _))) {
            self.pos += 1;
            let next = self.atom()?;
            self.out.edges.push((frag.last.clone(), next.first.clone()));
            frag = Frag { first: frag.first, last: next.last, bare_group: None };
        }
        Ok(frag)
    }

    fn atom(&mut self) -> Result<Frag, (usize, String)> {
        match self.peek().cloned() {
            Some((Tok::Name(name), _)) => {
                self.pos += 1;
                if self.seen.insert(name.clone()) {
                    self.out.tasks.push(name.clone());
                }
                Ok(Frag { first: name.clone(), last: name, bare_group: None })
            }
            Some((Tok::Open, open_col)) => {
                if self.depth >= MAX_DEPTH {
                    return Err((
                        open_col,
                        format!("parentheses nested deeper than {MAX_DEPTH} levels (flow::MAX_DEPTH)"),
                    ));
                }
                self.pos += 1;
                self.depth += 1;
                let inner = self.parallel();
                self.depth -= 1;
                let inner = inner?;
                match self.peek() {
                    Some((Tok::Close, _)) => {
                        self.pos += 1;
                        Ok(inner)
                    }
                    None => Err((open_col, "this '(' is never closed".into())),
                    other => Err((self.col(), format!("expected '>>', '|' or ')', found {}", describe(other)))),
                }
            }
            other => Err((self.col(), format!("expected a task name or '(', found {}", describe(other.as_ref())))),
        }
    }
}

/// Parse a flow expression into its graph.
pub fn parse(flow: &str) -> Result<FlowGraph, FlowError> {
    parse_reserving(flow, &|_| false)
}

/// [`parse`], the generated group names also skipping the names `reserved`
/// holds (tasks declared outside the flow).
pub fn parse_reserving(flow: &str, reserved: &dyn Fn(&str) -> bool) -> Result<FlowGraph, FlowError> {
    let err = |(offset, message): (usize, String)| {
        let before: Vec<char> = flow.chars().take(offset.saturating_sub(1)).collect();
        let line = 1 + before.iter().filter(|c| **c == '\n').count();
        let column = offset - before.iter().rposition(|c| *c == '\n').map_or(0, |p| p + 1);
        FlowError { line, column, message, flow: flow.to_string() }
    };
    let toks = tokenize(flow).map_err(err)?;
    let end_col = flow.chars().count() + 1;
    if toks.is_empty() {
        return Err(err((1, "the flow is empty; write task names joined by '>>' and '|'".into())));
    }
    let mut p =
        Parser { toks, pos: 0, depth: 0, seen: HashSet::new(), end_col, out: FlowGraph::default(), merged: Vec::new() };
    loop {
        while matches!(p.peek(), Some((Tok::Sep, _))) {
            p.pos += 1;
        }
        if p.peek().is_none() {
            break;
        }
        p.parallel().map_err(err)?;
        if !matches!(p.peek(), Some((Tok::Sep, _))) {
            break;
        }
    }
    if p.out.tasks.is_empty() {
        return Err(err((1, "the flow is empty; write task names joined by '>>' and '|'".into())));
    }
    if let Some(tok) = p.peek() {
        let msg = match tok.0 {
            Tok::Close => "unmatched ')'".to_string(),
            _ => format!("expected '>>' or '|', found {}", describe(Some(tok))),
        };
        return Err(err((tok.1, msg)));
    }
    Ok(name_groups(p.out, &p.merged, &|name| p.seen.contains(name) || reserved(name)))
}

/// Give groups their generated names (`group_1`, ... in closing order, skipping
/// names used by tasks) and drop groups merged into an enclosing one.
fn name_groups(mut g: FlowGraph, merged: &[usize], taken: &dyn Fn(&str) -> bool) -> FlowGraph {
    let merged: HashSet<usize> = merged.iter().copied().collect();
    let mut names = Vec::with_capacity(g.groups.len());
    let mut n = 0;
    for i in 0..g.groups.len() {
        if merged.contains(&i) {
            names.push(String::new());
            continue;
        }
        let name = loop {
            n += 1;
            let candidate = format!("group_{n}");
            if !taken(&candidate) {
                break candidate;
            }
        };
        names.push(name);
    }
    let rename = |node: &mut String| {
        if let Some(name) = node.strip_prefix('\0').and_then(|i| i.parse::<usize>().ok()).and_then(|i| names.get(i)) {
            *node = name.clone();
        }
    };
    for (a, b) in &mut g.edges {
        rename(a);
        rename(b);
    }
    for (_, members) in &mut g.groups {
        members.iter_mut().for_each(rename);
    }
    let groups = std::mem::take(&mut g.groups);
    g.groups = groups
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !merged.contains(i))
        .map(|(i, (_, m))| (names[i].clone(), m))
        .collect();
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(g: &FlowGraph) -> Vec<(&str, &str)> {
        g.edges.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
    }

    #[test]
    fn chain() {
        let g = parse("a >> b >> c").unwrap();
        assert_eq!(g.tasks, ["a", "b", "c"]);
        assert_eq!(edges(&g), [("a", "b"), ("b", "c")]);
        assert!(g.groups.is_empty());
    }

    #[test]
    fn diamond_through_a_group() {
        let g = parse("fetch >> (transform_a | transform_b) >> store").unwrap();
        assert_eq!(g.groups, vec![("group_1".to_string(), vec!["transform_a".to_string(), "transform_b".to_string()])]);
        assert_eq!(edges(&g), [("fetch", "group_1"), ("group_1", "store")]);
    }

    #[test]
    fn pipe_binds_looser_than_shift() {
        let g = parse("a >> b | c").unwrap();
        assert_eq!(g.groups[0].1, ["a", "c"]);
        assert_eq!(edges(&g), [("a", "b")]);
    }

    #[test]
    fn chains_inside_members_stay_in_the_branch() {
        let g = parse("(a >> b) | c").unwrap();
        assert_eq!(g.groups[0].1, ["a", "c"]);
        assert_eq!(edges(&g), [("a", "b")]);
    }

    #[test]
    fn nested_bare_groups_merge() {
        let g = parse("(a | b) | c").unwrap();
        assert_eq!(g.groups, vec![("group_1".to_string(), vec!["a".into(), "b".into(), "c".into()])]);
    }

    #[test]
    fn groups_in_a_chain_stay_nested() {
        let g = parse("((a | b) >> c) | d").unwrap();
        assert_eq!(g.groups.len(), 2);
        assert_eq!(g.groups[0], ("group_1".to_string(), vec!["a".into(), "b".into()]));
        assert_eq!(g.groups[1], ("group_2".to_string(), vec!["group_1".into(), "d".into()]));
        assert_eq!(edges(&g), [("group_1", "c")]);
    }

    #[test]
    fn repeated_names_make_cycles() {
        let g = parse("agent >> tool >> agent").unwrap();
        assert_eq!(g.tasks, ["agent", "tool"]);
        assert_eq!(edges(&g), [("agent", "tool"), ("tool", "agent")]);
    }

    #[test]
    fn generated_group_names_skip_task_names() {
        let g = parse("group_1 >> (a | b)").unwrap();
        assert_eq!(g.groups[0].0, "group_2");
    }

    fn col(flow: &str) -> (usize, String) {
        let e = parse(flow).unwrap_err();
        (e.column, e.message)
    }

    #[test]
    fn errors_point_at_the_column() {
        assert_eq!(col("a >> >> b").0, 6);
        assert_eq!(col("a >> (b | c").0, 6);
        assert!(col("a >> (b | c").1.contains("never closed"));
        assert_eq!(col("a >> b)").0, 7);
        assert!(col("a >> b)").1.contains("unmatched"));
        assert_eq!(col("a > b").0, 3);
        assert_eq!(col("a >> b $ c").0, 8);
        assert_eq!(col("a b").0, 3);
        assert_eq!(col("a >>").0, 5);
        assert_eq!(col("").0, 1);
        assert_eq!(col("a | ()").0, 6);
    }

    #[test]
    fn statements_share_one_graph() {
        let g = parse("a >> b >> d\n a >> c >> d; ").unwrap();
        assert_eq!(edges(&g), [("a", "b"), ("b", "d"), ("a", "c"), ("c", "d")]);
        let e = parse("a >> b\nb >> >> c").unwrap_err();
        assert_eq!((e.line, e.column), (2, 6));
        assert!(e.to_string().contains("line 2, column 6"), "{e}");
    }

    #[test]
    fn error_display_has_a_caret() {
        let text = parse("a >> >> b").unwrap_err().to_string();
        assert!(text.contains("column 6"), "{text}");
        assert!(text.ends_with("  a >> >> b\n       ^"), "{text:?}");
    }

    #[test]
    fn nesting_is_bounded_and_long_flows_parse() {
        let ok = format!("{}a{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        let deep = format!("{}a{}", "(".repeat(20_000), ")".repeat(20_000));
        let err = parse(&deep).unwrap_err();
        assert_eq!(err.column, MAX_DEPTH + 1);
        assert!(err.to_string().len() < 400, "the caret display is a window: {}", err.to_string().len());
        let names: Vec<String> = (0..100_000).map(|i| format!("t{i}")).collect();
        let g = parse(&names.join(" >> ")).unwrap();
        assert_eq!((g.tasks.len(), g.edges.len()), (100_000, 99_999));
        let wide = parse(&names.join(" | ")).unwrap();
        assert_eq!(wide.groups[0].1.len(), 100_000);
    }
}
