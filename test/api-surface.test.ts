/**
 * Every type a public signature names is exported from the package too, so a script can write
 * it down (`const o: ResolvedOptions = trainer.options`) without reaching into dist/ paths.
 * Read with the TypeScript compiler from src/index.ts: the exported functions' parameters and
 * declared return types, the public members of exported classes, and exported interfaces and
 * type aliases, followed through every type they name.
 */
import * as path from 'path';
import ts from 'typescript';

const SRC = path.resolve(__dirname, '..', 'src');

function publicSurface() {
  const program = ts.createProgram([path.join(SRC, 'index.ts')], { strict: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS, esModuleInterop: true });
  const checker = program.getTypeChecker();
  const index = program.getSourceFile(path.join(SRC, 'index.ts'))!;
  const resolve = (symbol: ts.Symbol) => (symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol);
  const exported = new Set(checker.getExportsOfModule(checker.getSymbolAtLocation(index)!).map(resolve));

  const missing = new Map<string, string>(); // type name -> where it was met
  const seen = new Set<ts.Symbol>();
  const isPublicMember = (m: ts.ClassElement) =>
    !(ts.getCombinedModifierFlags(m as ts.Declaration) & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) && !(m.name && ts.isPrivateIdentifier(m.name));

  // The type nodes of a declaration that a user of it sees (not function bodies, not private members).
  function typeNodes(decl: ts.Node): ts.Node[] {
    if (ts.isFunctionDeclaration(decl) || ts.isMethodDeclaration(decl) || ts.isConstructorDeclaration(decl) || ts.isGetAccessor(decl) || ts.isSetAccessor(decl))
      return [...(decl.typeParameters ?? []), ...decl.parameters.map((p) => p.type), decl.type].filter((n): n is ts.TypeNode | ts.TypeParameterDeclaration => n !== undefined);
    if (ts.isPropertyDeclaration(decl)) return decl.type ? [decl.type] : [];
    if (ts.isClassDeclaration(decl))
      return [...(decl.heritageClauses ?? []), ...decl.members.filter(isPublicMember).flatMap(typeNodes)];
    if (ts.isInterfaceDeclaration(decl) || ts.isTypeAliasDeclaration(decl)) return [decl];
    if (ts.isVariableDeclaration(decl)) return decl.type ? [decl.type] : [];
    return [];
  }

  function visit(symbol: ts.Symbol, via: string): void {
    if (seen.has(symbol)) return;
    seen.add(symbol);
    for (const decl of symbol.declarations ?? []) {
      if (!decl.getSourceFile().fileName.startsWith(SRC)) continue; // Node's and libraries' own types
      for (const node of typeNodes(decl)) walk(node, `${via}`);
    }
  }

  function walk(node: ts.Node, via: string): void {
    if (ts.isTypeQueryNode(node)) return; // `typeof value`: a value, not a type to export
    const name = ts.isTypeReferenceNode(node) ? node.typeName : ts.isExpressionWithTypeArguments(node) ? node.expression : null;
    if (name) {
      const found = checker.getSymbolAtLocation(name);
      const symbol = found && resolve(found);
      const decl = symbol?.declarations?.[0];
      if (symbol && decl && decl.getSourceFile().fileName.startsWith(SRC) && !ts.isTypeParameterDeclaration(decl)) {
        if (!exported.has(symbol) && !missing.has(symbol.name)) missing.set(symbol.name, via);
        visit(symbol, `${via} > ${symbol.name}`);
      }
    }
    ts.forEachChild(node, (child) => walk(child, via));
  }

  for (const symbol of exported) visit(symbol, symbol.name);
  return { exported: [...exported].map((s) => s.name), missing };
}

test('every type named in a public signature is exported from the package', () => {
  const { exported, missing } = publicSurface();
  expect(exported).toEqual(expect.arrayContaining(['Trainer', 'ResolvedOptions', 'EngineInfo', 'LesionSample'])); // the walk sees the surface
  expect(Object.fromEntries(missing)).toEqual({});
});
