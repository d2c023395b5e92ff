//! The cached function as the expansion needs it, and the checks that
//! reject what cannot be cached.

use crate::attr::Options;
use crate::ctx::Ctx;
use proc_macro2::Span;
use quote::format_ident;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{FnArg, GenericParam, Ident, ItemFn, Pat, PathArguments, Receiver, ReturnType, Type};

/// How the function is placed.
pub(crate) enum Kind {
    /// A free function: companions in a module beside it.
    Free,
    /// A method (`self` receiver) or an associated function (`in_impl`, or
    /// `Self` in the signature): companions are associated functions with
    /// a suffix.
    Associated { receiver: Option<Receiver> },
}

pub(crate) struct Arg {
    /// The name used by the generated code (the user's, or `__dogpile_argN`
    /// for a pattern).
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
    /// Left out of the key by `skip(...)`.
    pub(crate) skipped: bool,
}

/// What the function returns.
pub(crate) enum Output {
    /// Any value: cached as is.
    Value,
    /// `Result<T, E>`: only `Ok` is cached.
    Result,
    /// `Option<T>`: cached as is unless `cache_none = false`.
    Option,
}

pub(crate) struct Func {
    pub(crate) item: ItemFn,
    pub(crate) kind: Kind,
    pub(crate) args: Vec<Arg>,
    pub(crate) ret: Type,
    pub(crate) output: Output,
    pub(crate) is_async: bool,
}

/// Finds `impl Trait` and `Self` anywhere in a type.
#[derive(Default)]
struct TypeScan {
    impl_trait: Option<Span>,
    self_type: bool,
}

impl<'ast> Visit<'ast> for TypeScan {
    fn visit_type_impl_trait(&mut self, t: &'ast syn::TypeImplTrait) {
        self.impl_trait.get_or_insert(t.span());
    }
    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.segments.first().is_some_and(|s| s.ident == "Self") {
            self.self_type = true;
        }
        syn::visit::visit_path(self, p);
    }
}

fn scan(ty: &Type) -> TypeScan {
    let mut s = TypeScan::default();
    s.visit_type(ty);
    s
}

fn last_segment_is(ty: &Type, name: &str) -> bool {
    match ty {
        Type::Path(p) if p.qself.is_none() => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == name && matches!(s.arguments, PathArguments::AngleBracketed(_))),
        Type::Group(g) => last_segment_is(&g.elem, name),
        Type::Paren(p) => last_segment_is(&p.elem, name),
        _ => false,
    }
}

/// Reads and checks the function; problems go to `ctx`.
pub(crate) fn analyze(ctx: &mut Ctx, opts: &Options, item: ItemFn) -> Option<Func> {
    let sig = &item.sig;
    if let Some(c) = &sig.constness {
        ctx.error(c, "a `const fn` cannot be cached");
    }
    if let Some(u) = &sig.unsafety {
        ctx.error(u, "an `unsafe fn` cannot be cached; cache a safe wrapper around it");
    }
    if let Some(abi) = &sig.abi {
        ctx.error(abi, "a function with an explicit ABI cannot be cached");
    }
    if let Some(v) = &sig.variadic {
        ctx.error(v, "a variadic function cannot be cached");
    }
    for param in &sig.generics.params {
        match param {
            GenericParam::Lifetime(_) => {}
            GenericParam::Type(t) => ctx.error(
                t,
                "a generic function cannot be cached: its key would not tell the instantiations apart; \
                 cache a non-generic wrapper for each type instead",
            ),
            GenericParam::Const(c) => ctx.error(
                c,
                "a function with const generics cannot be cached: its key would not tell the instantiations apart",
            ),
        }
    }

    let mut receiver = None;
    let mut args = Vec::new();
    let mut mentions_self = false;
    for (i, input) in sig.inputs.iter().enumerate() {
        match input {
            FnArg::Receiver(r) => receiver = Some(r.clone()),
            FnArg::Typed(pt) => {
                let ident = match &*pt.pat {
                    Pat::Ident(p) if p.subpat.is_none() => p.ident.clone(),
                    _ => format_ident!("__dogpile_arg{}", i, span = pt.pat.span()),
                };
                let found = scan(&pt.ty);
                mentions_self |= found.self_type;
                if let Some(span) = found.impl_trait {
                    ctx.error_at(
                        span,
                        format!(
                            "`impl Trait` argument `{ident}` cannot be cached: its key would depend on a type \
                             the caller chooses; take a concrete type"
                        ),
                    );
                }
                if let Type::Reference(r) = &*pt.ty
                    && r.mutability.is_some()
                {
                    ctx.error(
                        &pt.ty,
                        format!(
                            "`&mut` argument `{ident}` cannot be cached: on a cache hit the function does not run, \
                             so the argument would silently not be changed"
                        ),
                    );
                }
                let skipped = opts.skip.contains(&ident);
                args.push(Arg { ident, ty: (*pt.ty).clone(), skipped });
            }
        }
    }
    for s in &opts.skip {
        if !args.iter().any(|a| a.ident == *s) {
            let names: Vec<String> = args.iter().map(|a| a.ident.to_string()).collect();
            ctx.error(s, format!("`skip`: no argument named `{s}`; the arguments are: {}", names.join(", ")));
        }
    }

    let ret = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    let ret_scan = scan(&ret);
    mentions_self |= ret_scan.self_type;
    if let Some(span) = ret_scan.impl_trait {
        ctx.error_at(span, "a function returning `impl Trait` cannot be cached: the cache must name the value's type");
    }
    let output = if last_segment_is(&ret, "Result") {
        Output::Result
    } else if last_segment_is(&ret, "Option") {
        Output::Option
    } else {
        Output::Value
    };
    if let Some((_, span)) = opts.cache_none
        && !matches!(output, Output::Option)
    {
        ctx.error_at(span, "`cache_none` applies to functions returning `Option<T>`");
    }

    match (&receiver, opts.include_self) {
        (None, Some(span)) => ctx.error_at(span, "`include_self` needs a method (a function with a `self` argument)"),
        (Some(_), Some(span)) if opts.key.is_some() => {
            ctx.error_at(span, "`include_self` and `key` cannot be used together: use `self` in the `key` expression")
        }
        _ => {}
    }

    let kind = if receiver.is_some() || opts.in_impl.is_some() || mentions_self {
        Kind::Associated { receiver }
    } else {
        Kind::Free
    };
    let is_async = sig.asyncness.is_some();
    Some(Func { item, kind, args, ret, output, is_async })
}
