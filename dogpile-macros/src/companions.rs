//! The generated items: the cached function, its original body, its site,
//! and the companions (`invalidate`, `refresh`, `set`, `get`, `original`,
//! `key`), either in a module beside a free function or as associated
//! functions with a suffix beside a method.

use crate::ast::{Kind, Output};
use crate::expand::{Gen, call_body, original_ident};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::{Attribute, Ident, Visibility};

/// The companions' signatures and bodies, for one placement.
struct Parts {
    /// `fn` name for each companion (`key` or `find_key`).
    name: fn(&Gen<'_>, &str) -> Ident,
    /// Visibility of each companion.
    vis: TokenStream,
    /// `&SITE` or `Self::__dogpile_site_find()`.
    site: TokenStream,
    /// The call of the original body, from where the companions are.
    original: TokenStream,
    /// Whether the companions live one module deeper.
    deeper: bool,
    /// `#[cfg]` attributes repeated on each companion.
    cfgs: Vec<Attribute>,
}

fn is_lint_or_cfg(a: &Attribute) -> bool {
    ["cfg", "allow", "warn", "deny", "forbid", "expect"].iter().any(|n| a.path().is_ident(n))
}

fn cfg_attrs(attrs: &[Attribute]) -> Vec<&Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("cfg")).collect()
}

/// The visibility of items inside the companion module that makes them as
/// visible as the function itself.
fn inner_vis(vis: &Visibility) -> TokenStream {
    match vis {
        Visibility::Public(_) => quote!(pub),
        Visibility::Inherited => quote!(pub(super)),
        Visibility::Restricted(r) => {
            let path = &r.path;
            let first = path.segments.first().map(|s| s.ident.to_string()).unwrap_or_default();
            match first.as_str() {
                "crate" => quote!(#vis),
                "self" if path.segments.len() == 1 => quote!(pub(super)),
                "super" => quote!(pub(in super::#path)),
                "self" => {
                    let rest = path.segments.iter().skip(1);
                    quote!(pub(in super #(::#rest)*))
                }
                _ => quote!(#vis),
            }
        }
    }
}

/// Generates the companions for one placement.
fn companions(g: &Gen<'_>, p: &Parts) -> TokenStream {
    let Gen { krate, func, .. } = g;
    let deeper = p.deeper;
    let vis = &p.vis;
    let site = &p.site;
    let fn_name = func.item.sig.ident.to_string();
    let receiver = match &func.kind {
        Kind::Associated { receiver: Some(r) } => quote!(#r,),
        _ => TokenStream::new(),
    };
    let types = g.arg_types(deeper);
    let idents: Vec<&Ident> = func.args.iter().map(|a| &a.ident).collect();
    let inputs = quote!(#receiver #(#idents: #types),*);
    let generics = &func.item.sig.generics;
    let where_clause = &generics.where_clause;
    let ret = g.adjust(&func.ret, deeper, syn::visit_mut::VisitMut::visit_type_mut);
    let cached_ty = if deeper { g.cached_ty_deeper() } else { g.cached_ty.clone() };
    let tuple = g.args_tuple();
    let pattern = g.args_pattern();
    let write = g.write_closure(deeper);
    let original = &p.original;
    let value = Ident::new("value", Span::mixed_site());
    let (asyncness, dot_await, sfx) =
        if func.is_async { (quote!(async), quote!(.await), "_async") } else { (quote!(), quote!(), "") };
    let helper = |name: &str| format_ident!("{}{}", name, sfx);
    let (invalidate, get, set) = (helper("invalidate"), helper("get"), helper("set"));
    let refresh = match func.output {
        Output::Result => helper("try_refresh"),
        _ => helper("refresh"),
    };
    let exp = match g.expiration(deeper) {
        Some(e) => quote!(::core::option::Option::Some(#e)),
        None => quote!(::core::option::Option::None),
    };
    let pred = match g.predicate(deeper) {
        Some(pr) => quote!(::core::option::Option::Some(#pr)),
        None => quote!(::core::option::Option::None),
    };
    let n = |s: &str| (p.name)(g, s);
    let (key_fn, invalidate_fn, get_fn, set_fn, refresh_fn, original_fn) =
        (n("key"), n("invalidate"), n("get"), n("set"), n("refresh"), n("original"));
    let cfgs = &p.cfgs;
    let doc_key = format!("The cache key of `{fn_name}` for these arguments.");
    let doc_invalidate = format!("Deletes the cached value of `{fn_name}` for these arguments.");
    let doc_get = format!("The cached value of `{fn_name}` for these arguments, if one is stored and fresh.");
    let doc_set = format!("Stores `value` as the result of `{fn_name}` for these arguments.");
    let doc_refresh = format!("Runs `{fn_name}` and stores its result, fresh or not.");
    let original_item = match &func.kind {
        // A method's original body is the `_original` companion itself.
        Kind::Associated { .. } => TokenStream::new(),
        Kind::Free => {
            let doc = format!("Runs `{fn_name}` without the cache.");
            quote! {
                #(#cfgs)*
                #[doc = #doc]
                #vis #asyncness fn #original_fn #generics (#inputs) -> #ret #where_clause {
                    #original #dot_await
                }
            }
        }
    };
    quote! {
        #(#cfgs)*
        #[doc = #doc_key]
        #vis fn #key_fn #generics (#inputs) -> #krate::__private::String #where_clause {
            #krate::__private::key(#site, #tuple, #write)
        }
        #(#cfgs)*
        #[doc = #doc_invalidate]
        #vis #asyncness fn #invalidate_fn #generics (#inputs) #where_clause {
            #krate::__private::#invalidate(#site, #tuple, #write) #dot_await
        }
        #(#cfgs)*
        #[doc = #doc_get]
        #vis #asyncness fn #get_fn #generics (#inputs) -> ::core::option::Option<#cached_ty> #where_clause {
            #krate::__private::#get(#site, #exp, #tuple, #write) #dot_await
        }
        #(#cfgs)*
        #[doc = #doc_set]
        #vis #asyncness fn #set_fn #generics (#receiver #value: #cached_ty, #(#idents: #types),*) #where_clause {
            #krate::__private::#set(#site, #value, #tuple, #write) #dot_await
        }
        #(#cfgs)*
        #[doc = #doc_refresh]
        #vis #asyncness fn #refresh_fn #generics (#inputs) -> #ret #where_clause {
            #krate::__private::#refresh(#site, #pred, #tuple, #write, move |#pattern| #original) #dot_await
        }
        #original_item
    }
}

/// A free function: the function, a hidden function with the original
/// body, and a module of the same name with the site and the companions.
pub(crate) fn free(g: &Gen<'_>) -> TokenStream {
    let item = &g.func.item;
    let sig = &item.sig;
    let ident = &sig.ident;
    let vis = &item.vis;
    let attrs = &item.attrs;
    let cfgs = cfg_attrs(attrs);
    let lint_attrs: Vec<&Attribute> = attrs.iter().filter(|a| is_lint_or_cfg(a)).collect();
    let original = original_ident(ident);
    let idents: Vec<&Ident> = g.func.args.iter().map(|a| &a.ident).collect();
    let types: Vec<&syn::Type> = g.func.args.iter().map(|a| &a.ty).collect();
    let mut wrapper_sig = sig.clone();
    wrapper_sig.inputs = syn::parse_quote!(#(#idents: #types),*);
    let body = call_body(g, &quote!(&#ident::SITE), &quote!(#original(#(#idents),*)), false);
    let mut original_sig = sig.clone();
    original_sig.ident = original.clone();
    let block = &item.block;
    let site = g.site_items(true, quote!(pub(super)));
    let parts = Parts {
        name: |_, s| Ident::new(s, Span::call_site()),
        vis: inner_vis(vis),
        site: quote!(&SITE),
        original: quote!(super::#original(#(#idents),*)),
        deeper: true,
        cfgs: Vec::new(),
    };
    let companions = companions(g, &parts);
    let mod_doc = format!(
        "Companions of the cached function [`{ident}()`]: `key`, `invalidate`, `get`, `set`, `refresh` and \
         `original`, each taking the same arguments and using the same cache key."
    );
    quote! {
        #(#attrs)*
        #vis #wrapper_sig {
            #body
        }

        #(#lint_attrs)*
        #[doc(hidden)]
        #original_sig #block

        #(#cfgs)*
        #[doc = #mod_doc]
        #[allow(dead_code)]
        #vis mod #ident {
            #[allow(unused_imports)]
            use super::*;
            #site
            #companions
        }
    }
}

/// A method or associated function: the function, its `_original`, a
/// hidden function owning the site, and `_key`, `_invalidate`... beside it.
pub(crate) fn associated(g: &Gen<'_>) -> TokenStream {
    let item = &g.func.item;
    let sig = &item.sig;
    let ident = &sig.ident;
    let vis = &item.vis;
    let attrs = &item.attrs;
    let lint_attrs: Vec<&Attribute> = attrs.iter().filter(|a| is_lint_or_cfg(a)).collect();
    let cfgs = cfg_attrs(attrs);
    let original = format_ident!("{}_original", ident);
    let site_fn = format_ident!("__dogpile_site_{}", ident);
    let idents: Vec<&Ident> = g.func.args.iter().map(|a| &a.ident).collect();
    let types: Vec<&syn::Type> = g.func.args.iter().map(|a| &a.ty).collect();
    let self_var = &g.self_var;
    let receiver = match &g.func.kind {
        Kind::Associated { receiver: Some(r) } => Some(r),
        _ => None,
    };
    let call_original = match receiver {
        Some(_) => quote!(Self::#original(#self_var, #(#idents),*)),
        None => quote!(Self::#original(#(#idents),*)),
    };
    let mut wrapper_sig = sig.clone();
    let receiver_tokens = receiver.map(|r| quote!(#r,));
    wrapper_sig.inputs = syn::parse_quote!(#receiver_tokens #(#idents: #types),*);
    let body = call_body(g, &quote!(Self::#site_fn()), &call_original, false);
    let mut original_sig = sig.clone();
    original_sig.ident = original.clone();
    let block = &item.block;
    let krate = &g.krate;
    let site = g.site_items(false, TokenStream::new());
    let parts = Parts {
        name: |g, s| format_ident!("{}_{}", g.func.item.sig.ident, s),
        vis: quote!(#vis),
        site: quote!(Self::#site_fn()),
        original: call_original.clone(),
        deeper: false,
        cfgs: cfgs.iter().map(|a| (*a).clone()).collect(),
    };
    let companions = companions(g, &parts);
    let doc_original = format!("Runs `{ident}` without the cache.");
    quote! {
        #(#attrs)*
        #vis #wrapper_sig {
            #body
        }

        #(#lint_attrs)*
        #[doc = #doc_original]
        #vis #original_sig #block

        #(#cfgs)*
        #[doc(hidden)]
        fn #site_fn() -> &'static #krate::__private::Site {
            #site
            &SITE
        }

        #companions
    }
}
