//! The options of `#[cached(...)]`.

use crate::ctx::Ctx;
use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ExprUnary, Ident, Lit, LitStr, Meta, Path, Token, UnOp};

pub(crate) const OPTIONS: &[&str] = &[
    "region",
    "namespace",
    "key",
    "skip",
    "expiration",
    "should_cache",
    "cache_none",
    "include_self",
    "in_impl",
    "name",
    "crate",
];

/// Where the region comes from.
pub(crate) enum RegionOpt {
    /// `region = "name"`.
    Name(LitStr),
    /// `region = STATIC`: a `region!` handle.
    Handle(Path),
}

pub(crate) enum ExpirationOpt {
    /// Parsed at compile time: `Some(nanos)` or `None` for never.
    Fixed(Option<u128>, Span),
    /// Any expression of a type convertible into `Expiration`.
    Expr(Expr),
}

#[derive(Default)]
pub(crate) struct Options {
    pub(crate) region: Option<RegionOpt>,
    pub(crate) namespace: Option<LitStr>,
    pub(crate) key: Option<Expr>,
    pub(crate) skip: Vec<Ident>,
    pub(crate) expiration: Option<ExpirationOpt>,
    pub(crate) should_cache: Option<Expr>,
    pub(crate) cache_none: Option<(bool, Span)>,
    pub(crate) include_self: Option<Span>,
    pub(crate) in_impl: Option<Span>,
    pub(crate) name: Option<LitStr>,
    pub(crate) krate: Option<Path>,
}

impl Options {
    /// The path generated code uses for the `dogpile` crate.
    pub(crate) fn krate(&self) -> TokenStream {
        match &self.krate {
            Some(p) => p.to_token_stream(),
            None => quote!(::dogpile),
        }
    }
}

fn name_of(path: &Path) -> String {
    path.segments.iter().map(|s| s.ident.to_string()).collect::<Vec<_>>().join("::")
}

fn lit_str(ctx: &mut Ctx, expr: &Expr, option: &str) -> Option<LitStr> {
    match expr {
        Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => Some(s.clone()),
        _ => {
            ctx.error(expr, format!("`{option}` expects a string literal, as in `{option} = \"...\"`"));
            None
        }
    }
}

fn flag(ctx: &mut Ctx, meta: &Meta) -> Option<bool> {
    match meta {
        Meta::Path(_) => Some(true),
        Meta::NameValue(nv) => match &nv.value {
            Expr::Lit(ExprLit { lit: Lit::Bool(b), .. }) => Some(b.value),
            other => {
                ctx.error(other, "expected `true` or `false`");
                None
            }
        },
        Meta::List(l) => {
            ctx.error(l, "expected a flag (`name` or `name = true`), not a list");
            None
        }
    }
}

/// Parses `expiration = ...`: a duration string or a number of seconds is
/// checked now; anything else is left to the compiler.
fn expiration(ctx: &mut Ctx, expr: &Expr) -> Option<ExpirationOpt> {
    match expr {
        Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => {
            let text = s.value();
            if text.trim() == "never" {
                return Some(ExpirationOpt::Fixed(None, s.span()));
            }
            let parsed = text
                .trim()
                .parse::<u64>()
                .map(std::time::Duration::from_secs)
                .or_else(|_| humantime::parse_duration(&text));
            match parsed {
                Ok(d) => Some(ExpirationOpt::Fixed(Some(d.as_nanos()), s.span())),
                Err(e) => {
                    ctx.error(
                        s,
                        format!("invalid expiration `{text}`: {e}; write e.g. \"90s\", \"5m\", \"1h\" or \"never\""),
                    );
                    None
                }
            }
        }
        Expr::Lit(ExprLit { lit: Lit::Int(i), .. }) => match i.base10_parse::<u64>() {
            Ok(secs) => Some(ExpirationOpt::Fixed(Some(u128::from(secs) * 1_000_000_000), i.span())),
            Err(e) => {
                ctx.error(i, format!("invalid number of seconds: {e}"));
                None
            }
        },
        Expr::Unary(ExprUnary { op: UnOp::Neg(_), expr: inner, .. }) if matches!(&**inner, Expr::Lit(ExprLit { lit: Lit::Int(i), .. }) if i.base10_digits() == "1") => {
            Some(ExpirationOpt::Fixed(None, expr.span()))
        }
        Expr::Lit(ExprLit { lit, .. }) => {
            ctx.error(lit, "`expiration` expects a duration string (\"5m\"), a number of seconds, or an expression");
            None
        }
        other => Some(ExpirationOpt::Expr(other.clone())),
    }
}

/// Parses the attribute's arguments; every problem goes to `ctx`.
pub(crate) fn parse(ctx: &mut Ctx, args: TokenStream) -> Options {
    let mut opts = Options::default();
    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args) {
        Ok(m) => m,
        Err(e) => {
            ctx.syn_error(e);
            return opts;
        }
    };
    let mut seen: Vec<String> = Vec::new();
    for meta in &metas {
        let name = name_of(meta.path());
        if !OPTIONS.contains(&name.as_str()) {
            ctx.error(meta.path(), format!("unknown option `{name}`; expected one of: {}", OPTIONS.join(", ")));
            continue;
        }
        if seen.contains(&name) {
            ctx.error(meta.path(), format!("duplicate option `{name}`"));
            continue;
        }
        seen.push(name.clone());
        let value = match meta {
            Meta::NameValue(nv) => Some(&nv.value),
            _ => None,
        };
        let needs_value = |ctx: &mut Ctx| {
            ctx.error(meta, format!("`{name}` needs a value: `{name} = ...`"));
        };
        match name.as_str() {
            "region" => match value {
                Some(Expr::Lit(ExprLit { lit: Lit::Str(s), .. })) => {
                    if s.value().is_empty() {
                        ctx.error(s, "the region name is empty");
                    }
                    opts.region = Some(RegionOpt::Name(s.clone()));
                }
                Some(Expr::Path(p)) if p.qself.is_none() => opts.region = Some(RegionOpt::Handle(p.path.clone())),
                Some(other) => ctx.error(
                    other,
                    "`region` expects the region's name (`region = \"users\"`) or a `region!` static (`region = USERS`)",
                ),
                None => needs_value(ctx),
            },
            "namespace" | "name" => match value {
                Some(v) => {
                    let s = lit_str(ctx, v, &name);
                    if name == "namespace" { opts.namespace = s } else { opts.name = s }
                }
                None => needs_value(ctx),
            },
            "key" => match value {
                Some(v) => opts.key = Some(v.clone()),
                None => needs_value(ctx),
            },
            "should_cache" => match value {
                Some(v) => opts.should_cache = Some(v.clone()),
                None => needs_value(ctx),
            },
            "expiration" => match value {
                Some(v) => opts.expiration = expiration(ctx, v),
                None => needs_value(ctx),
            },
            "crate" => match value {
                Some(v) => {
                    if let Some(s) = lit_str(ctx, v, "crate") {
                        match s.parse::<Path>() {
                            Ok(p) if p.segments.first().is_some_and(|f| f.ident == "self" || f.ident == "super") => {
                                ctx.error(&s, "`crate` must not start with `self` or `super` (the companions live in a \
                                               module of their own): write `crate::...` or `::...`");
                            }
                            Ok(p) => opts.krate = Some(p),
                            Err(_) => ctx.error(&s, "`crate` expects a path, as in `crate = \"my_crate::dogpile\"`"),
                        }
                    }
                }
                None => needs_value(ctx),
            },
            "skip" => match meta {
                Meta::List(list) => match list.parse_args_with(Punctuated::<Ident, Token![,]>::parse_terminated) {
                    Ok(idents) => opts.skip = idents.into_iter().collect(),
                    Err(e) => ctx.syn_error(e),
                },
                _ => ctx.error(meta, "`skip` lists argument names: `skip(conn, logger)`"),
            },
            "cache_none" => {
                if let Some(b) = flag(ctx, meta) {
                    opts.cache_none = Some((b, meta.span()));
                }
            }
            "include_self" | "in_impl" => {
                if flag(ctx, meta) == Some(true) {
                    let span = meta.span();
                    if name == "include_self" { opts.include_self = Some(span) } else { opts.in_impl = Some(span) }
                }
            }
            _ => unreachable!("every name of OPTIONS is handled"),
        }
    }
    if opts.region.is_none() && !seen.iter().any(|s| s == "region") {
        ctx.error_at(
            Span::call_site(),
            "missing `region`: write `#[cached(region = \"name\")]` with the name of a region declared by `region!`",
        );
    }
    if let (Some(key), false) = (&opts.key, opts.skip.is_empty()) {
        ctx.error(
            key,
            "`key` and `skip` cannot be used together: the `key` expression already chooses what goes into the key",
        );
    }
    opts
}
