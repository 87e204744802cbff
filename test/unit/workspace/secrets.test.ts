import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redactSecrets, secretFileByContent, secretFileByName } from '../../../src/workspace/secrets';
import { fake } from './fixture';

test('secret files by name', () => {
  const secret = ['.env', 'app/.env', '.env.local', '.env.production', 'prod.env', '.envrc', 'id_rsa', 'keys/id_ed25519', 'server.pem',
    'tls.key', 'store.p12', 'cert.pfx', '.netrc', 'credentials.json', 'home/.aws/credentials', '.docker/config.json',
    'client_secret_123.apps.json', 'terraform.tfstate', 'x/.git-credentials', '.pypirc'];
  for (const p of secret) assert.notEqual(secretFileByName(p), undefined, p);
  const fine = ['.env.example', '.env.sample', '.env.template', 'env.ts', 'id_rsa.pub', 'keyboard.ts', 'src/credentials.ts',
    'config.json', '.npmrc', 'environment.md', 'docs/.aws-notes.md'];
  for (const p of fine) assert.equal(secretFileByName(p), undefined, p);
});

test('.npmrc is a secret only when it holds an auth token', () => {
  assert.equal(secretFileByContent('.npmrc', 'registry=https://registry.npmjs.org/\n'), undefined);
  assert.match(secretFileByContent('.npmrc', '//registry.npmjs.org/:_authToken=abc\n') ?? '', /auth token/);
  assert.match(secretFileByContent('sub/.yarnrc.yml', 'npmAuthToken: abc\n') ?? '', /auth token/);
  assert.equal(secretFileByContent('notes.md', '_authToken=abc'), undefined);
});

test('each high-confidence pattern is redacted with its kind and counted', () => {
  const cases: [string, string][] = [
    [fake.awsKey, 'aws-access-key'], [fake.githubToken, 'github-token'], [fake.privateKey, 'private-key'],
    [fake.slackToken, 'slack-token'], [fake.googleKey, 'google-api-key'], [fake.stripeKey, 'stripe-key'],
    [fake.openaiKey, 'openai-key'], [fake.jwt, 'jwt'],
  ];
  for (const [secret, kind] of cases) {
    const r = redactSecrets(`const k = "${secret}";\nuse(k);\n`);
    assert.equal(r.text, `const k = "[REDACTED:${kind}]";\nuse(k);\n`, kind);
    assert.equal(r.count, 1, kind);
    assert.deepEqual(r.kinds, { [kind]: 1 });
  }
});

test('several secrets in one file are all counted', () => {
  const r = redactSecrets(`a=${fake.awsKey}\nb=${fake.awsKey}\nc=${fake.githubToken}\n`);
  assert.equal(r.count, 3);
  assert.deepEqual(r.kinds, { 'aws-access-key': 2, 'github-token': 1 });
  assert.equal(r.text, 'a=[REDACTED:aws-access-key]\nb=[REDACTED:aws-access-key]\nc=[REDACTED:github-token]\n');
});

test('ordinary code is left alone', () => {
  const code = [
    'const AKIA = "AKIA";', 'if (pem.startsWith("-----BEGIN RSA PRIVATE KEY-----")) parse(pem);', 'const sk = "sk-1234";',
    'const token = process.env.GITHUB_TOKEN;', 'const className = "task-list-item-checkbox-container-wrapper-outer";',
    'const h = "ghp_short";', 'x = eyJhbGciOi;',
  ].join('\n');
  const r = redactSecrets(code);
  assert.equal(r.count, 0);
  assert.equal(r.text, code);
});
