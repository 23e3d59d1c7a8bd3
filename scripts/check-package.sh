#!/usr/bin/env bash
# The package as a user gets it: `npm pack`, then `npm install` of that tarball into a new
# project (its install script builds both addons against the LibTorch found here), then a tiny
# training run through the public API and the `melanoma` bin. Run by CI after scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
npm pack --pack-destination "$work" --silent > /dev/null
cd "$work"
npm init -y > /dev/null
started=$SECONDS
npm install --no-audit --no-fund --prefer-offline --loglevel=error ./melanoma-native-*.tgz
echo "check-package: installed in $((SECONDS - started)) s (both addons built by the install script)"
cat > consumer.js <<'EOF'
const { Trainer, ensureDemoDataset, openDataset, splitByFold, stratifiedGroupKFold } = require('melanoma-native');
(async () => {
  const dir = await ensureDemoDataset();
  const { samples } = await openDataset(dir);
  const { train, valid } = splitByFold(samples, stratifiedGroupKFold(samples, 5, 42), 0);
  const trainer = new Trainer({ widthFactor: 0.25, imageSize: 32, batchSize: 16, epochs: 1, device: 'cpu' });
  const history = await trainer.fit({ train, valid });
  await trainer.dispose();
  const auc = history[history.length - 1].validAuc;
  if (!(auc >= 0 && auc <= 1)) throw new Error(`no validation AUC after one epoch (got ${auc})`);
  console.log(`check-package: trained 1 epoch through the installed package, validation AUC ${auc.toFixed(3)}`);
})().catch((err) => { console.error(err); process.exit(1); });
EOF
node consumer.js
npx --no-install melanoma --version
echo "check-package: ok"
