//! Reading YAML: YAML 1.2 with explicit limits, so that hostile input fails fast, and with each
//! node's YAML type and tag kept, so that what the CR cannot hold can be named by its field.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::granit_parser::ErrorKind;
use serde_saphyr::localizer::Localizer;
use serde_saphyr::{
    DuplicateKeyPolicy, Error as YamlError, ExternalMessageSource, Location, MergeKeyPolicy,
    MessageFormatter, NonFiniteFloatPolicy, SnippetMode, Spanned, Tagged, UserMessageFormatter,
};

/// A ConfigMap holds at most 1 MiB, so its YAML has fewer than 2^20 nodes; more means aliases
/// are expanding.
pub const MAX_NODES: usize = 1 << 20;
/// Parser events (nodes and collection ends), twice the nodes.
pub const MAX_EVENTS: usize = 2 << 20;
/// Nesting of mappings and lists: the configuration is about five levels deep, and each level
/// costs the reader's recursion up to 32 KiB of stack (unoptimized builds).
pub const MAX_DEPTH: usize = 32;
/// Bytes of scalar text, aliases' copies included: four times what a ConfigMap can hold.
pub const MAX_SCALAR_BYTES: usize = 4 << 20;
/// Anchors and aliases: a rendered configuration has none; allowed, but not without end.
pub const MAX_ALIASES: usize = 10_000;
/// Nodes that aliases may copy from their anchors, in all: ten times the nodes of a large
/// configuration, and few enough to be refused in well under a second.
pub const MAX_ALIAS_COPIES: usize = 100_000;

/// A YAML node as read: keys keep their YAML type and every node its explicit tag.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    /// A negative integer.
    Int(i64),
    UInt(u64),
    Float(f64),
    /// An integer literal beyond 64 bits, as written: the reader would round it to a float.
    LargeInteger(String),
    String(String),
    List(Vec<Item>),
    Mapping(Vec<(Item, Item)>),
}

/// A node with its explicit tag, if it has one (core-schema tags in their `tag:yaml.org,2002:`
/// form), and where its text is.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub node: Node,
    pub tag: Option<String>,
    defined: Location,
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Tagged(Spanned { value, defined, .. }, tag) = Tagged::<Spanned<Node>>::deserialize(d)?;
        Ok(Item {
            node: value,
            tag,
            defined,
        })
    }
}

/// Why a text is not YAML the reader accepts, and where (line 0 when the parser cannot tell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Reads one YAML 1.2 document: `off` and `yes` stay strings, `012` and `1_000` stay strings,
/// merge keys (`<<`) are ordinary keys; duplicate keys, a second document and anything past
/// the limits above are errors.
pub fn parse(text: &str) -> Result<Item, Invalid> {
    let mut item = serde_saphyr::from_str_with_options(text, options()).map_err(|e| invalid(&e))?;
    mark_large_integers(&mut item, text);
    Ok(item)
}

/// A manifest (a CRD or a CR) as JSON, read as YAML 1.2 like the user configuration; manifests
/// are no user input, so the reader's default limits apply.
pub fn manifest(text: &str) -> std::result::Result<serde_json::Value, String> {
    serde_saphyr::from_str_with_options(
        text,
        serde_saphyr::options! {
            strict_booleans: true,
            leading_zero_numbers_as_strings: true,
            underscored_numbers_as_strings: true,
        },
    )
    .map_err(|e| e.to_string())
}

/// The reader reads an integer beyond 64 bits as the float nearest to it, which would change
/// the value; such nodes keep their text instead, so that they can be refused by field.
fn mark_large_integers(item: &mut Item, text: &str) {
    match &mut item.node {
        Node::Float(_) if item.tag.is_none() => {
            let span = item.defined.span();
            let literal = span
                .byte_offset()
                .zip(span.byte_len())
                .and_then(|(at, len)| {
                    text.get(to_usize(at)..to_usize(at).saturating_add(to_usize(len)))
                });
            if let Some(literal) = literal.filter(|l| is_integer_literal(l)) {
                item.node = Node::LargeInteger(literal.to_string());
            }
        }
        Node::List(items) => items.iter_mut().for_each(|i| mark_large_integers(i, text)),
        Node::Mapping(entries) => entries.iter_mut().for_each(|(k, v)| {
            mark_large_integers(k, text);
            mark_large_integers(v, text);
        }),
        _ => {}
    }
}

/// The core schema's decimal integer: `[-+]?[0-9]+`.
fn is_integer_literal(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: 1,
            max_depth: MAX_DEPTH,
            flow_nesting_limit: MAX_DEPTH,
            max_nodes: MAX_NODES,
            max_events: MAX_EVENTS,
            max_total_scalar_bytes: MAX_SCALAR_BYTES,
            max_aliases: MAX_ALIASES,
            max_anchors: MAX_ALIASES,
            max_recorded_anchor_events: MAX_ALIAS_COPIES,
            max_recorded_anchor_bytes: MAX_SCALAR_BYTES,
            enforce_alias_anchor_ratio: true,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_ALIAS_COPIES,
            max_replay_stack_depth: MAX_DEPTH,
            max_alias_expansions_per_anchor: MAX_ALIASES,
        },
        duplicate_keys: DuplicateKeyPolicy::Error,
        merge_keys: MergeKeyPolicy::AsOrdinary,
        strict_booleans: true,
        legacy_octal_numbers: false,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        // NaN and infinity reach the reader, which names the field they are in.
        non_finite_float_policy: NonFiniteFloatPolicy::PassThrough,
        with_snippet: false,
        // Comments are checked as YAML but not kept: nothing reads them.
        emit_comments: false,
    }
}

fn invalid(e: &YamlError) -> Invalid {
    let (line, column) = e
        .location()
        .filter(|l| *l != Location::UNKNOWN)
        .map(|l| (to_usize(l.line()), to_usize(l.column())))
        .unwrap_or((0, 0));
    let mut inner = e;
    let mut through_alias = false;
    while let YamlError::AliasError { error, .. } | YamlError::WithSnippet { error, .. } = inner {
        through_alias |= matches!(inner, YamlError::AliasError { .. });
        inner = error;
    }
    let wording = Wording { through_alias };
    let message = e.render_with_options(serde_saphyr::render_options! {
        formatter: &wording,
        snippets: SnippetMode::Off,
    });
    Invalid {
        line,
        column,
        message,
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The reader's wording for what its options refuse; the parser's own for the rest. The
/// caller's error adds line and column, so none are added here.
struct Wording {
    /// Whether the error arose while aliases were being expanded.
    through_alias: bool,
}

impl Wording {
    fn over_limit(&self, limit: String) -> Cow<'static, str> {
        if self.through_alias {
            format!(
                "repetition limit exceeded: aliases take the document over the limit of {limit}"
            )
            .into()
        } else {
            format!("the document goes over the limit of {limit}").into()
        }
    }
}

impl Localizer for Wording {
    fn attach_location<'a>(&self, base: Cow<'a, str>, _loc: Location) -> Cow<'a, str> {
        base
    }

    fn alias_used_at(&self, _used: Location) -> String {
        String::new()
    }

    fn alias_defined_at(&self, defined: Location) -> String {
        format!(
            " (anchor at line {}, column {})",
            defined.line(),
            defined.column()
        )
    }
}

impl MessageFormatter for Wording {
    fn localizer(&self) -> &dyn Localizer {
        self
    }

    fn format_message<'a>(&self, err: &'a YamlError) -> Cow<'a, str> {
        match err {
            YamlError::MultipleDocuments { .. }
            | YamlError::Budget {
                breach: BudgetBreach::Documents { .. },
                ..
            } => "the text holds more than one document; the configuration is one YAML document"
                .into(),
            YamlError::DuplicateMappingKey { key: Some(k), .. } => {
                format!("duplicate key {k:?}").into()
            }
            YamlError::DuplicateMappingKey { key: None, .. } => "duplicate key".into(),
            YamlError::Budget { breach, .. } => self.over_limit(limit(breach)),
            YamlError::ExternalMessage { source, .. }
                if matches!(
                    source.as_ref(),
                    ExternalMessageSource::Parser(scan)
                        if matches!(scan.kind(), ErrorKind::RecursionLimitExceeded)
                ) =>
            {
                self.over_limit(limit(&BudgetBreach::Depth { depth: 0 }))
            }
            YamlError::AliasReplayLimitExceeded { .. }
            | YamlError::AliasReplayCounterOverflow { .. } => Wording {
                through_alias: true,
            }
            .over_limit(format!("{MAX_ALIAS_COPIES} nodes copied from anchors")),
            YamlError::AliasExpansionLimitExceeded { .. } => Wording {
                through_alias: true,
            }
            .over_limit(format!("{MAX_ALIASES} uses of one anchor")),
            YamlError::AliasReplayStackDepthExceeded { .. } => Wording {
                through_alias: true,
            }
            .over_limit(format!("{MAX_DEPTH} aliases within aliases")),
            other => UserMessageFormatter.format_message(other),
        }
    }
}

/// The limit a breach went over, in words.
fn limit(breach: &BudgetBreach) -> String {
    match breach {
        BudgetBreach::Nodes { .. } => format!("{MAX_NODES} nodes"),
        BudgetBreach::Events { .. } => format!("{MAX_EVENTS} parser events"),
        BudgetBreach::Depth { .. } => format!("{MAX_DEPTH} levels of nesting"),
        BudgetBreach::ScalarBytes { .. } | BudgetBreach::RecordedAnchorBytes { .. } => {
            format!("{MAX_SCALAR_BYTES} bytes of text")
        }
        BudgetBreach::Aliases { .. } => format!("{MAX_ALIASES} aliases"),
        BudgetBreach::Anchors { .. } => format!("{MAX_ALIASES} anchors"),
        BudgetBreach::RecordedAnchorEvents { .. } => {
            format!("{MAX_ALIAS_COPIES} nodes copied from anchors")
        }
        BudgetBreach::AliasAnchorRatio { .. } => {
            let b = serde_saphyr::Budget::default();
            format!(
                "{} aliases per anchor (beyond {} aliases)",
                b.alias_anchor_ratio_multiplier, b.alias_anchor_min_aliases
            )
        }
        other => format!("{other:?}"),
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML node")
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(if v < 0 {
            Node::Int(v)
        } else {
            Node::UInt(v.unsigned_abs())
        })
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Node::Mapping(entries))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        Err(E::invalid_type(de::Unexpected::Bytes(v), &self))
    }
}

/// Whether a tag is one whose meaning the reader has already applied: the core schema's.
pub fn is_core_tag(tag: &str) -> bool {
    tag.strip_prefix("tag:yaml.org,2002:")
        .is_some_and(|t| matches!(t, "str" | "int" | "float" | "bool" | "null" | "seq" | "map"))
}

/// A tag as it is written: `!!binary` rather than `tag:yaml.org,2002:binary`.
pub fn tag_text(tag: &str) -> String {
    match tag.strip_prefix("tag:yaml.org,2002:") {
        Some(t) => format!("!!{t}"),
        None => tag.to_string(),
    }
}

/// A scalar as YAML writes it (`.nan`, `-.inf`, `null`); lists and mappings by their kind.
pub fn scalar_text(node: &Node) -> String {
    match node {
        Node::Null => "null".into(),
        Node::Bool(b) => b.to_string(),
        Node::Int(i) => i.to_string(),
        Node::UInt(u) => u.to_string(),
        Node::Float(f) if f.is_nan() => ".nan".into(),
        Node::Float(f) if f.is_infinite() => if *f > 0.0 { ".inf" } else { "-.inf" }.into(),
        Node::Float(f) => serde_json::Number::from_f64(*f)
            .map(|n| n.to_string())
            .unwrap_or_else(|| f.to_string()),
        Node::LargeInteger(s) => s.clone(),
        Node::String(s) => format!("{s:?}"),
        Node::List(_) => "(a list)".into(),
        Node::Mapping(_) => "(a mapping)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Node {
        match parse(text).unwrap() {
            Item {
                node: Node::Mapping(mut m),
                tag: None,
                ..
            } => m.remove(0).1.node,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn yaml_1_2_scalars() {
        for (text, want) in [
            ("a: off", Node::String("off".into())),
            ("a: yes", Node::String("yes".into())),
            ("a: True", Node::Bool(true)),
            ("a: 012", Node::String("012".into())),
            ("a: 1_000", Node::String("1_000".into())),
            ("a: 0x1F", Node::UInt(31)),
            ("a: -3", Node::Int(-3)),
            ("a: 2001-12-14", Node::String("2001-12-14".into())),
            ("a: ~", Node::Null),
            ("a: !!str 1", Node::String("1".into())),
        ] {
            assert_eq!(value(text), want, "{text}");
        }
    }

    #[test]
    fn merge_keys_are_ordinary_keys() {
        let Node::Mapping(m) = parse("<<: {a: 1}").unwrap().node else {
            panic!()
        };
        assert_eq!(m[0].0.node, Node::String("<<".into()));
    }

    #[test]
    fn integers_beyond_64_bits_keep_their_text() {
        for (text, want) in [
            (
                "a: 99999999999999999999",
                Node::LargeInteger("99999999999999999999".into()),
            ),
            (
                "a: -9223372036854775809",
                Node::LargeInteger("-9223372036854775809".into()),
            ),
            ("a: 18446744073709551615", Node::UInt(u64::MAX)),
            ("a: 1e20", Node::Float(1e20)),
            ("a: 100000000000000000000.0", Node::Float(1e20)),
            ("a: !!float 99999999999999999999", Node::Float(1e20)),
        ] {
            assert_eq!(value(text), want, "{text}");
        }
        let Node::List(items) = value("a: [1, 99999999999999999999]") else {
            panic!()
        };
        assert_eq!(
            items[1].node,
            Node::LargeInteger("99999999999999999999".into())
        );
    }

    #[test]
    fn limits_are_named() {
        let e = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(e.message.contains("more than one document"), "{e:?}");
        assert_eq!((e.line, e.column), (2, 1));
        for text in [
            format!("a: {}1{}", "[".repeat(65), "]".repeat(65)),
            format!(
                "a:{}1",
                (1..66)
                    .map(|i| format!("\n{}- ", " ".repeat(2 * i)))
                    .collect::<String>()
            ),
        ] {
            let e = parse(&text).unwrap_err();
            assert!(e.message.contains("limit"), "{e:?}");
        }
        let deepest = format!(
            "a: {}1{}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(parse(&deepest).is_ok());
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.message, "duplicate key \"a\"");
        assert_eq!((e.line, e.column), (3, 1));
    }

    #[test]
    fn aliases_of_a_long_text_are_bounded() {
        // 99 copies of half a mebibyte: under the alias count, over the bytes of text.
        let text = format!(
            "a: &a \"{}\"\nb: [{}]\n",
            "x".repeat(500_000),
            vec!["*a"; 99].join(", ")
        );
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("repetition limit exceeded"), "{e:?}");
    }

    #[test]
    fn tags_are_spelled_as_written() {
        assert_eq!(tag_text("tag:yaml.org,2002:binary"), "!!binary");
        assert_eq!(tag_text("!secret"), "!secret");
        assert!(is_core_tag("tag:yaml.org,2002:str"));
        assert!(!is_core_tag("tag:yaml.org,2002:binary"));
        assert!(!is_core_tag("!"));
    }
}
