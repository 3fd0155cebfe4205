//! The `#[managed]` attribute of [multiproc](https://docs.rs/multiproc):
//! use it as `multiproc::managed`, where its documentation and examples
//! are.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{format_ident, quote};
use syn::{FnArg, ImplItem, ItemImpl, Pat, ReturnType, Type, parse_macro_input};

/// Makes the methods of an `impl` block callable on a value that lives in
/// a `multiproc::Manager`'s server. See `multiproc::managed`.
#[proc_macro_attribute]
pub fn managed(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(Span::call_site(), "#[managed] takes no arguments").to_compile_error().into();
    }
    let block = parse_macro_input!(item as ItemImpl);
    match expand(&block) {
        Ok(extra) => quote!(#block #extra).into(),
        Err(e) => {
            let e = e.to_compile_error();
            quote!(#block #e).into()
        }
    }
}

fn expand(block: &ItemImpl) -> syn::Result<proc_macro2::TokenStream> {
    if block.trait_.is_some() || !block.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &block.self_ty,
            "#[managed] goes on an inherent impl block of a type without generic parameters",
        ));
    }
    let Type::Path(path) = &*block.self_ty else {
        return Err(syn::Error::new_spanned(&block.self_ty, "#[managed] needs a named type"));
    };
    let ty = &block.self_ty;
    let name = &path.path.segments.last().expect("a path has a segment").ident;
    let trait_name = format_ident!("{}Proxy", name);
    let mut constructors = Vec::new();
    let mut methods = Vec::new();
    let mut signatures = Vec::new();
    for item in &block.items {
        let ImplItem::Fn(f) = item else { continue };
        let sig = &f.sig;
        let fname = &sig.ident;
        let mut names = Vec::new();
        let mut types = Vec::new();
        let mut receiver = None;
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(r) => receiver = Some(r),
                FnArg::Typed(t) => {
                    let Pat::Ident(id) = &*t.pat else {
                        return Err(syn::Error::new_spanned(&t.pat, "#[managed] methods name each argument"));
                    };
                    names.push(id.ident.clone());
                    types.push((*t.ty).clone());
                }
            }
        }
        let output: Type = match &sig.output {
            ReturnType::Default => syn::parse_quote!(()),
            ReturnType::Type(_, t) => (**t).clone(),
        };
        let doc = format!("Runs [`{name}::{fname}`] on the managed object, in the manager's server.");
        match receiver {
            Some(r) if r.reference.is_some() => {
                signatures.push(quote! {
                    #[doc = #doc]
                    fn #fname(&self, #(#names: #types),*) -> ::multiproc::Result<#output>;
                });
                methods.push(quote! {
                    fn #fname(&self, #(#names: #types),*) -> ::multiproc::Result<#output> {
                        self.call(|this: &mut #ty, (#(#names,)*): (#(#types,)*)| this.#fname(#(#names),*), (#(#names,)*))
                    }
                });
            }
            Some(r) => {
                return Err(syn::Error::new_spanned(
                    r,
                    "#[managed] methods take &self or &mut self: the object stays in the server",
                ));
            }
            None => {
                let returns_self = match &output {
                    Type::Path(p) => {
                        p.path.is_ident("Self") || p.path.segments.last().is_some_and(|s| s.ident == *name)
                    }
                    _ => false,
                };
                if !returns_self {
                    continue;
                }
                let vis = &f.vis;
                let made = format_ident!("{}_in", fname);
                let cdoc = format!(
                    "Makes a `{name}` with [`{name}::{fname}`] in `manager`'s server, and returns a proxy to it, \
                     whose methods are those of [`{trait_name}`]."
                );
                constructors.push(quote! {
                    #[doc = #cdoc]
                    #vis fn #made(manager: &::multiproc::Manager, #(#names: #types),*)
                        -> ::multiproc::Result<::multiproc::manager::CustomProxy<#ty>> {
                        manager.create(|(#(#names,)*): (#(#types,)*)| #ty::#fname(#(#names),*), (#(#names,)*))
                    }
                });
            }
        }
    }
    let trait_doc = format!(
        "The methods of a managed [`{name}`], on its proxy (`multiproc::manager::CustomProxy<{name}>`): each runs \
         in the manager's server, atomically, and its errors are those of `CustomProxy::call`."
    );
    Ok(quote! {
        impl #ty {
            #(#constructors)*
        }

        #[doc = #trait_doc]
        pub trait #trait_name {
            #(#signatures)*
        }

        impl #trait_name for ::multiproc::manager::CustomProxy<#ty> {
            #(#methods)*
        }
    })
}
