//! Code generation of `#[cached]`: the call, the key closure, the options
//! and the site (the static that finds the region). The items are laid out
//! in `companions.rs`.
//!
//! Every call, companion and key goes through one write closure generated
//! from the same tokens, so `f::invalidate(a)` deletes exactly what `f(a)`
//! stored.

use crate::ast::{self, Func, Kind, Output};
use crate::attr::{self, ExpirationOpt, Options, RegionOpt};
use crate::companions;
use crate::ctx::Ctx;
use dogpile_core_escape::escape;
use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{Expr, Ident, ItemFn};

/// The escaping of `dogpile_core::write_key_str`, applied at compile time
/// to names and namespaces.
mod dogpile_core_escape {
    pub(crate) fn escape(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            if matches!(c, '\\' | '|' | ',' | '(' | ')' | '[' | ']' | '{' | '}' | '=' | '~' | '"') {
                out.push('\\');
            }
            out.push(c);
        }
        if out.is_empty() { "\"\"".to_owned() } else { out }
    }
}

pub(crate) fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut ctx = Ctx::default();
    let opts = attr::parse(&mut ctx, args);
    let item_fn: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            ctx.error_at(Span::call_site(), "#[cached] applies to functions and methods");
            let errors = ctx.into_compile_errors();
            return quote!(#errors #item);
        }
    };
    let func = ast::analyze(&mut ctx, &opts, item_fn);
    match func {
        Some(func) if !ctx.has_errors() => expand(&opts, &func),
        _ => {
            // Keep the user's item as written so the rest of the crate
            // still type-checks and rust-analyzer keeps working.
            let errors = ctx.into_compile_errors();
            quote!(#errors #item)
        }
    }
}

/// Replaces the value `self` by `__dogpile_self` in a `key` expression, so
/// the key can be written from the argument tuple (which holds the
/// receiver) while the function body owns the receiver.
struct RenameSelf;

impl VisitMut for RenameSelf {
    fn visit_expr_mut(&mut self, e: &mut Expr) {
        if let Expr::Path(p) = e
            && p.qself.is_none()
            && p.path.is_ident("self")
        {
            *e = syn::parse_quote_spanned!(p.span()=> __dogpile_self);
            return;
        }
        syn::visit_mut::visit_expr_mut(self, e);
    }
}

/// The tokens shared by the function and its companions.
pub(crate) struct Gen<'a> {
    pub(crate) opts: &'a Options,
    pub(crate) func: &'a Func,
    pub(crate) krate: TokenStream,
    /// `__dogpile_key`, `__dogpile_args`, `__dogpile_self`: mixed-site so
    /// they cannot clash with the user's names.
    pub(crate) key_var: Ident,
    pub(crate) args_var: Ident,
    pub(crate) self_var: Ident,
    /// The value type stored: the return type, or `T` of `Result<T, E>`.
    pub(crate) cached_ty: TokenStream,
}

impl<'a> Gen<'a> {
    pub(crate) fn new(opts: &'a Options, func: &'a Func) -> Self {
        let krate = opts.krate();
        let ret = &func.ret;
        let cached_ty = match func.output {
            Output::Result => quote!(<#ret as #krate::__private::Fallible>::Ok),
            _ => ret.to_token_stream(),
        };
        Gen {
            opts,
            func,
            krate,
            key_var: Ident::new("__dogpile_key", Span::mixed_site()),
            args_var: Ident::new("__dogpile_args", Span::mixed_site()),
            self_var: Ident::new("__dogpile_self", Span::call_site()),
            cached_ty,
        }
    }

    pub(crate) fn has_receiver(&self) -> bool {
        matches!(self.func.kind, Kind::Associated { receiver: Some(_) })
    }

    /// `(self, a, b,)`: the receiver (if any) and the arguments, moved into
    /// one tuple.
    pub(crate) fn args_tuple(&self) -> TokenStream {
        let receiver = self.has_receiver().then(|| quote!(self,));
        let idents = self.func.args.iter().map(|a| &a.ident);
        quote!((#receiver #(#idents,)*))
    }

    /// `(__dogpile_self, a, b,)`: the pattern taking that tuple apart.
    pub(crate) fn args_pattern(&self) -> TokenStream {
        let receiver = self.has_receiver().then(|| {
            let s = &self.self_var;
            quote!(#s,)
        });
        let idents = self.func.args.iter().map(|a| &a.ident);
        quote!((#receiver #(#idents,)*))
    }

    /// The closure writing the key after the site's prefix: `|args, key| ...`.
    pub(crate) fn write_closure(&self) -> TokenStream {
        let Gen { krate, key_var, args_var, self_var, .. } = self;
        let pattern = self.args_pattern();
        let mut body = TokenStream::new();
        if let (Kind::Associated { .. }, None) = (&self.func.kind, &self.opts.name) {
            let method = format!("{}{}", self.func.item.sig.ident, self.namespace_suffix());
            body.extend(quote!(#krate::__private::write_type_prefix::<Self>(#key_var, #method);));
        }
        if let Some(key) = &self.opts.key {
            let mut key = key.clone();
            RenameSelf.visit_expr_mut(&mut key);
            let span = key.span();
            body.extend(quote_spanned!(span=> #krate::__private::write_arg(#key_var, &(#key));));
        } else {
            if let (Some(_), Kind::Associated { receiver: Some(r) }) = (self.opts.include_self, &self.func.kind) {
                // The receiver's own span, so that a missing `CacheKey`
                // is reported at `self`.
                let self_here = Ident::new(&self_var.to_string(), r.self_token.span);
                body.extend(quote_spanned!(r.span()=> #krate::__private::write_arg(#key_var, #self_here);));
            }
            for arg in self.func.args.iter().filter(|a| !a.skipped) {
                let ident = &arg.ident;
                let span = arg.ty.span();
                body.extend(quote_spanned!(span=> #krate::__private::write_arg(#key_var, #ident);));
            }
        }
        quote! {
            |#args_var, #key_var| {
                #[allow(unused_variables)]
                let #pattern = #args_var;
                #body
            }
        }
    }

    /// `|...| namespace` for keys; empty without a namespace.
    fn namespace_suffix(&self) -> String {
        self.opts.namespace.as_ref().map(|ns| format!("|{}", escape(&ns.value()))).unwrap_or_default()
    }

    /// The site's key prefix: `Some("module::f|ns")` for free functions and
    /// `name = ...`; `None` for methods (their prefix names `Self`).
    fn prefix(&self) -> TokenStream {
        let ns = self.namespace_suffix();
        match (&self.opts.name, &self.func.kind) {
            (Some(name), _) => {
                let p = format!("{}{ns}", escape(&name.value()));
                quote!(::core::option::Option::Some(#p))
            }
            (None, Kind::Free) => {
                let name = format!("::{}{ns}", self.func.item.sig.ident);
                quote!(::core::option::Option::Some(::core::concat!(::core::module_path!(), #name)))
            }
            (None, Kind::Associated { .. }) => quote!(::core::option::Option::None),
        }
    }

    /// `static SITE: Site = ...;` plus its registration.
    pub(crate) fn site_items(&self) -> TokenStream {
        let krate = &self.krate;
        let region = match self.opts.region.as_ref().expect("checked by attr::parse") {
            RegionOpt::Name(n) => quote!(#krate::__private::RegionRef::Name(#n)),
            RegionOpt::Handle(p) => quote!(#krate::__private::RegionRef::Handle(&#p)),
        };
        let name = format!("::{}", self.func.item.sig.ident);
        let function = quote!(::core::concat!(::core::module_path!(), #name));
        let prefix = self.prefix();
        // A free function's companion type has the function's name; its
        // `type_name` includes an enclosing function, if any.
        let scoped = match (&self.opts.name, &self.func.kind) {
            (None, Kind::Free) => {
                let ident = &self.func.item.sig.ident;
                quote!(.scoped(::core::any::type_name::<#ident>))
            }
            (Some(_), _) => quote!(.named()),
            (None, Kind::Associated { .. }) => quote!(),
        };
        quote! {
            #[doc(hidden)]
            static SITE: #krate::__private::Site =
                #krate::__private::Site::new(#function, #prefix, ::core::file!(), ::core::line!(), #region) #scoped;
            #krate::__private::inventory::submit! {
                #krate::__private::Registration::Function(&SITE)
            }
        }
    }

    /// `assert_value::<T>();` at the return type: the one error a return
    /// type that cannot be cached gets.
    pub(crate) fn assert_value(&self) -> TokenStream {
        let (span, krate, value) = self.value_at_return();
        quote_spanned!(span=> #krate::__private::assert_value::<#value>();)
    }

    /// A call of the `__private` helper `name`, whose type parameters are
    /// the arguments' type, the value type, then `after` more (inferred).
    ///
    /// A value type that cannot be cached breaks the `Cacheable` bound of
    /// every helper the function and its companions call. Rustc drops an
    /// error at the same span as an earlier one of the same body for the
    /// same trait, and prints identical errors once: so each body starts
    /// with [`assert_value`](Self::assert_value), and every token of the
    /// helper's call that rustc may point at (the value type argument, or
    /// the whole call) has the span of the assertion's, and the user sees
    /// one error.
    ///
    /// An async helper is awaited here (its future's type carries the
    /// bound too, and `.await` is where rustc reports it).
    pub(crate) fn value_call(&self, name: &str, after: usize, args: TokenStream) -> TokenStream {
        let (span, krate, value) = self.value_at_return();
        let name = Ident::new(name, span);
        let rest = (0..after).map(|_| quote_spanned!(span=> _));
        let dot_await = self.func.is_async.then(|| quote_spanned!(span=> .await));
        quote_spanned!(span=> #krate::__private::#name::<_, #value #(, #rest)*>(#args) #dot_await)
    }

    /// The span of the return type's first token, the crate path with that
    /// span, and the value type as a projection whose first and last tokens
    /// have it (so that its span is the same whatever the return type).
    fn value_at_return(&self) -> (Span, TokenStream, TokenStream) {
        let span = self.func.ret.span();
        let krate = respan(self.krate.clone(), span);
        let ret = &self.func.ret;
        let value = match self.func.output {
            Output::Result => quote_spanned!(span=> <#ret as #krate::__private::Fallible>::Ok),
            _ => quote_spanned!(span=> <#ret as #krate::__private::Itself>::Type),
        };
        (span, krate, value)
    }

    /// The `CreateOptions` builder (`fn() -> CreateOptions<C>`), if the
    /// function has an expiration or a should-cache rule.
    pub(crate) fn options_fn(&self) -> Option<TokenStream> {
        let krate = &self.krate;
        let exp = self.expiration().map(|e| quote!(.expiration(#e)));
        let pred = self.predicate().map(|p| quote!(.should_cache(#p)));
        if exp.is_none() && pred.is_none() {
            return None;
        }
        Some(quote!(|| #krate::CreateOptions::new() #exp #pred))
    }

    /// The expiration expression, if set.
    pub(crate) fn expiration(&self) -> Option<TokenStream> {
        let krate = &self.krate;
        Some(match self.opts.expiration.as_ref()? {
            ExpirationOpt::Fixed(None, span) => quote_spanned!(*span=> #krate::Expiration::Never),
            ExpirationOpt::Fixed(Some(nanos), span) => {
                let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
                let sub = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
                quote_spanned!(*span=> #krate::Expiration::After(::core::time::Duration::new(#secs, #sub)))
            }
            ExpirationOpt::Expr(e) => quote_spanned!(e.span()=> #krate::__private::into_expiration(#e)),
        })
    }

    /// The should-cache predicate on `&C`, combining `should_cache` and
    /// `cache_none = false`.
    pub(crate) fn predicate(&self) -> Option<TokenStream> {
        let krate = &self.krate;
        let cached_ty = &self.cached_ty;
        let user = self.opts.should_cache.clone();
        let no_none = matches!(self.opts.cache_none, Some((false, _)));
        let base = match (user, no_none) {
            (None, false) => None,
            (Some(p), false) => Some(quote_spanned!(p.span()=> #p)),
            (None, true) => Some(quote!(#krate::__private::is_some)),
            (Some(p), true) => Some(quote! {
                |v: &#cached_ty| #krate::__private::is_some(v) && (#p)(v)
            }),
        };
        if !(matches!(self.func.output, Output::Value) && maybe_result_alias(&self.func.ret)) {
            return base;
        }
        // The return type may be a `Result` behind an alias: let its type
        // decide (errors are never stored).
        let probe = quote! {
            {
                #[allow(unused_imports)]
                use #krate::__private::{AcceptsAny as _, AcceptsOk as _};
                (&#krate::__private::ResultProbe::<#cached_ty>::new()).accepts(v)
            }
        };
        Some(match base {
            None => quote!(|v: &#cached_ty| #probe),
            Some(p) => quote!(|v: &#cached_ty| #probe && (#p)(v)),
        })
    }
}

/// Whether a plain-value return type could be a `Result` alias: a path type
/// that is not one of the common non-`Result` standard types. (A literal
/// `Result<..>` is handled as such before this is asked.)
fn maybe_result_alias(ty: &syn::Type) -> bool {
    const PLAIN: &[&str] = &[
        "String", "Vec", "Box", "Arc", "Rc", "Cow", "HashMap", "BTreeMap", "HashSet", "BTreeSet", "VecDeque", "u8",
        "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize", "f32", "f64", "bool", "char",
    ];
    match ty {
        syn::Type::Path(p) if p.qself.is_none() => {
            p.path.segments.last().is_some_and(|s| !PLAIN.iter().any(|name| s.ident == name))
        }
        syn::Type::Group(g) => maybe_result_alias(&g.elem),
        syn::Type::Paren(p) => maybe_result_alias(&p.elem),
        _ => false,
    }
}

fn expand(opts: &Options, func: &Func) -> TokenStream {
    let g = Gen::new(opts, func);
    companions::generate(&g)
}

/// The body of the cached function: one call into `__private`.
pub(crate) fn call_body(g: &Gen<'_>, site: &TokenStream, original: &TokenStream) -> TokenStream {
    let tuple = g.args_tuple();
    let pattern = g.args_pattern();
    let write = g.write_closure();
    let create = quote!(move |#pattern| #original);
    let options = g.options_fn();
    let opt_arg = match &options {
        Some(o) => quote!(::core::option::Option::Some(#o)),
        None => quote!(::core::option::Option::None),
    };
    let assert = g.assert_value();
    let call = match (&g.func.output, g.func.is_async) {
        (Output::Result, false) => g.value_call("try_call", 1, quote!(#site, #opt_arg, #tuple, #write, #create)),
        (Output::Result, true) => g.value_call("try_call_async", 3, quote!(#site, #opt_arg, #tuple, #write, #create)),
        (_, true) => g.value_call("call_async", 2, quote!(#site, #opt_arg, #tuple, #write, #create)),
        (_, false) => match options {
            Some(o) => g.value_call("call_with", 0, quote!(#site, #o, #tuple, #write, #create)),
            None => g.value_call("call", 0, quote!(#site, #tuple, #write, #create)),
        },
    };
    quote! {
        #assert
        #call
    }
}

/// `tokens` with every span set to `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(g) = &tree {
                let mut group = Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                return TokenTree::Group(group);
            }
            tree.set_span(span);
            tree
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn compile_time_escaping_matches_the_runtime_one() {
        for s in ["", "plain", "a|b", "ns\\x", "(x,y)=[z]{w}~\"q\"", "ünï"] {
            let mut runtime = String::new();
            dogpile_core::write_key_str(&mut runtime, s);
            assert_eq!(escape(s), runtime, "for {s:?}");
        }
    }
}
