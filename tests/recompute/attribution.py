"""Recomputes the attribution credit by channel of every shipped model from the events, by the
rules of docs/views.md and docs/funnels.md (*Attribution*), without Baton's code, and compares
it with `baton report attribution --json`. Standard library only.

    python3 tests/recompute/attribution.py history.ndjson report.json

Exits 1, listing them, when any (model, channel, currency) differs. Simplifications, which
`baton gen` histories never meet: a visitor is stitched only when identified as exactly one
person; every currency has two decimal places but JPY and KRW."""
import json, sys, hashlib, uuid, collections, math
NS = uuid.UUID('6d1f0c4e-52b1-4b8e-9a3c-0b7a7e15ba70')
def eid(system, mid):
    h = hashlib.sha1(NS.bytes + system.encode() + b'\0' + mid.encode()).digest()
    b = bytearray(h[:16]); b[6] = (b[6] & 0x0f) | 0x50; b[8] = (b[8] & 0x3f) | 0x80
    return str(uuid.UUID(bytes=bytes(b)))
TOUCH = {'content_viewed','form_submitted','email_sent','email_delivered','email_opened','email_clicked','email_bounced','email_unsubscribed','social_interaction','ad_clicked','webinar_registered','webinar_attended','executive_event_invited','executive_event_attended','demo_requested','proposal_viewed','nps_responded','product_usage_summarized','custom_touch'}
NOT = {'email_sent','email_delivered','email_bounced','email_unsubscribed','nps_responded','product_usage_summarized'}
COUNTED = TOUCH - NOT
from datetime import datetime
def ms(t): return int(datetime.fromisoformat(t.replace('Z','+00:00')).timestamp()*1000)
events = []; seen = set()
for line in open(sys.argv[1]):
    e = json.loads(line)
    i = e.get('event_id') or eid(e['source']['system'], e['message_id'])
    if i in seen: continue
    seen.add(i); e['id'] = i; e['at'] = ms(e['occurred_at']); events.append(e)
byid = {e['id']: e for e in events}
# retractions in effect (a retracted retraction does not count)
retr = {e['id']: e['data']['target'] for e in events if e['kind'] == 'retracted'}
def retracted(i, depth=0):
    # i is retracted when some retraction in effect targets it
    return any(t == i and not retracted(r, depth+1) for r, t in retr.items()) if depth < 20 else False
targets = collections.defaultdict(list)
for r, t in retr.items(): targets[t].append(r)
memo = {}
def out(i, depth=0):
    if i in memo: return memo[i]
    v = any(not out(r, depth+1) for r in targets.get(i, [])) if depth < 50 else False
    memo[i] = v; return v
for e in events:
    if e['kind'] == 'corrected' and not out(e['id']):
        t = byid.get(e['data']['target'])
        if t is None: continue
        if e['data'].get('occurred_at'): t['at'] = ms(e['data']['occurred_at'])
        rep = e['data'].get('replacement')
        if rep: t['data'] = rep['data']
merged = {}
for e in sorted(events, key=lambda e: (e['at'], e['id'])):
    if e['kind'] == 'merged' and not out(e['id']):
        merged[e['data']['from_person_id']] = e['data']['into_person_id']
def canon(p):
    for _ in range(50):
        if p in merged: p = merged[p]
        else: break
    return p
ident = collections.defaultdict(set)
for e in events:
    if e['kind'] == 'identified' and not out(e['id']):
        ident[e['data']['anonymous_id']].add(canon(e['data']['person_id']))
def person_of(e):
    if e.get('person_id'): return canon(e['person_id'])
    a = e.get('anonymous_id')
    if a and len(ident.get(a, ())) == 1: return next(iter(ident[a]))
    return None
links = collections.defaultdict(list); seen_acct = {}
for e in sorted(events, key=lambda e: (e['at'], e['id'])):
    if e['kind'] == 'linked_to_account' and not out(e['id']):
        links[canon(e['data']['person_id'])].append((e['at'], e['id'], e['data']['account_id']))
    p = person_of(e) if e['kind'] != 'linked_to_account' else canon(e['data']['person_id'])
    if p and e.get('account_id') and p not in seen_acct: seen_acct[p] = e['account_id']
def account(p):
    if links.get(p): return max(links[p])[2]
    return seen_acct.get(p)
facts = collections.defaultdict(list)
for e in events:
    if out(e['id']) or e['kind'] in ('retracted','corrected','merged','linked_to_account','account_updated','person_updated'): continue
    if e['kind'].startswith('subscription_'): continue
    p = person_of(e)
    if p: facts[p].append(e)
for p in facts: facts[p].sort(key=lambda e: (e['at'], e['id']))
opps = {}
AMT = ('opportunity_created','opportunity_amount_changed','proposal_sent','opportunity_closed_won')
for p, fs in facts.items():
    for e in fs:
        o = e.get('opportunity_id')
        if not o: continue
        d = opps.setdefault(o, {'facts': []}); d['facts'].append((p, e))
for o, d in opps.items():
    fs = sorted(d['facts'], key=lambda pe: (pe[1]['at'], pe[1]['id']))
    created = [pe for pe in fs if pe[1]['kind'] == 'opportunity_created']
    first = created[0] if created else fs[0]
    d['person'] = first[0]; d['created'] = first[1]['at']; d['account'] = account(first[0])
    amt = None
    for p, e in fs:
        if e['kind'] in AMT and 'amount' in e['data'] and e['data'].get('currency'):
            if amt is None or e['at'] >= amt[0]: amt = (e['at'], e['data']['amount'], e['data']['currency'])
    d['amount'] = amt
    won = [e['at'] for p, e in fs if e['kind'] == 'opportunity_closed_won']
    lost = [e['at'] for p, e in fs if e['kind'] == 'opportunity_closed_lost']
    d['status'] = 'won' if won else ('lost' if lost else 'open')
    d['closed'] = min(won) if won else (max(lost) if lost else None)
    d['carriers'] = sorted({p for p, e in fs})
members = collections.defaultdict(list)
for p in facts: members[account(p)].append(p)
def minor(text, cur):
    exp = 0 if cur in ('JPY','KRW') else 2
    whole, _, frac = text.partition('.')
    return int(whole) * 10**exp + int((frac + '0'*exp)[:exp] or 0) * (1 if not whole.startswith('-') else -1)
MODELS = {'first_touch': ([1e6,0,0,0,0,0,0], None), 'last_touch': ([0,0,0,1e6,0,0,0], None), 'linear': ([0,0,0,0,0,0,1e6], None),
  'u_shaped': ([4e5,4e5,0,0,0,2e5,0], None), 'w_shaped': ([3e5,3e5,0,3e5,0,1e5,0], None),
  'full_path': ([225e3,225e3,0,225e3,225e3,1e5,0], None), 'time_decay': ([0,0,0,0,0,0,1e6], 7*86400000)}
def lr(total, ws):
    s = sum(ws); parts = [total*w//s for w in ws]; left = total - sum(parts)
    order = sorted([i for i in range(len(ws)) if ws[i] > 0], key=lambda i: -(total*ws[i] % s))
    k = 0
    while left > 0:
        parts[order[k % len(order)]] += 1; left -= 1; k += 1
    return parts
roll = collections.defaultdict(lambda: [0, 0])
for o, d in opps.items():
    if d['status'] == 'lost' or d['amount'] is None: continue
    cur = d['amount'][2]; A = minor(d['amount'][1], cur)
    people = members[d['account']] if d['account'] else d['carriers']
    cut = d['closed'] if d['status'] == 'won' else None
    ts = sorted([e for p in people for e in facts[p] if e['kind'] in COUNTED and (cut is None or e['at'] <= cut)], key=lambda e: (e['at'], e['id']))
    def before(t):
        if t is None or (cut is not None and t > cut): return None
        idx = [i for i, e in enumerate(ts) if e['at'] <= t]
        return idx[-1] if idx else None
    leads = [e['at'] for p in people for e in facts[p] if e['kind'] in ('form_submitted', 'identified')]
    ms_ = [0 if ts else None, before(min(leads) if leads else None), None, before(d['created']), before(cut) if d['status'] == 'won' else None]
    for name, (w, hl) in MODELS.items():
        w = [int(x) for x in w]
        n = len(ts)
        if n == 0:
            roll[(name, '(unattributed)', cur)][0 if d['status']=='won' else 1] += A; continue
        holds = [False]*n
        for c in range(5):
            if ms_[c] is not None and w[c] > 0: holds[ms_[c]] = True
        spread = [1 if hl is None else round(1e6 * 2 ** (-(ts[-1]['at'] - e['at']) / hl)) for e in ts]
        mid = [0 if holds[i] else spread[i] for i in range(n)]
        present = [w[c] if (ms_[c] is not None if c < 5 else (sum(mid) > 0 if c == 5 else sum(spread) > 0)) else 0 for c in range(7)]
        if sum(present) == 0:
            roll[(name, '(unattributed)', cur)][0 if d['status']=='won' else 1] += A; continue
        parts = lr(abs(A), present); cred = [0]*n
        for c in range(7):
            if present[c] == 0: continue
            if c < 5: cred[ms_[c]] += parts[c]
            else:
                ws = mid if c == 5 else spread
                for i, g in enumerate(lr(parts[c], ws)): cred[i] += g
        for i, e in enumerate(ts):
            share = sum((present[c]/sum(present)) * ((1 if ms_[c] == i else 0) if c < 5 else ((mid if c == 5 else spread)[i] / sum(mid if c == 5 else spread))) for c in range(7) if present[c])
            if share <= 0: continue
            ch = e.get('channel') or '(none)'
            roll[(name, ch, cur)][0 if d['status']=='won' else 1] += cred[i] * (1 if A >= 0 else -1)
rep = json.load(open(sys.argv[2]))['tables']['attribution_credit']
mine = {(r['model'], r['value'], r['currency']): [round(r['credited_revenue']*100), round(r['credited_pipeline']*100)] for r in rep if r['dimension'] == 'channel'}
keys = set(mine) | set(roll)
bad = [(k, mine.get(k), roll.get(k)) for k in sorted(keys) if mine.get(k, [0,0]) != list(roll.get(k, [0,0]))]
print(len(keys), 'rows;', len(bad), 'differ')
for b in bad[:20]: print(b)
sys.exit(1 if bad or not keys else 0)
