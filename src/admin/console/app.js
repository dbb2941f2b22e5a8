// pgward console: approvals for approvers, sessions and the audit log for auditors.
//
// It only calls pgward's /v1 API with the token the person signed in with, and shows what the
// API answers: Approve and Reject appear only where the API says `can_decide`, the Sessions view
// only for auditors. Every value is set as text (never as markup): SQL, parameters and reasons
// come from clients and approvers.
'use strict';

(() => {
  const TOKEN_KEY = 'pgward.token';
  const APPROVALS_REFRESH_MS = 2000;
  const FOLLOW_WAIT_S = 20;

  const state = {
    me: null,
    view: null,
    approvalsTimer: null,
    rejecting: null,
    shownApprovals: null,
    session: null,
    lastSeq: 0,
    followAbort: null,
  };

  const $ = (id) => document.getElementById(id);

  // el('li', {class: 'x', 'data-testid': 'y'}, 'text', child, …): an element with attributes
  // and children; strings become text nodes, null and undefined are skipped.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      e.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return e;
  }

  function show(id, visible) {
    $(id).hidden = !visible;
  }

  function flash(message) {
    const f = $('flash');
    f.textContent = message;
    f.hidden = !message;
  }

  function utc(time) {
    if (!time) return '';
    return new Date(time.unix_ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '');
  }

  function ago(unixMs) {
    let s = Math.max(0, Math.round((Date.now() - unixMs) / 1000));
    const h = Math.floor(s / 3600);
    s -= h * 3600;
    const m = Math.floor(s / 60);
    s -= m * 60;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${s}s`;
    return `${s}s`;
  }

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.error) || `HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  async function api(path, options = {}) {
    const token = sessionStorage.getItem(TOKEN_KEY) || '';
    const headers = { Authorization: `Bearer ${token}` };
    let body;
    if (options.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(options.body);
    }
    const r = await fetch(path, {
      method: options.method || 'GET',
      headers,
      body,
      cache: 'no-store',
      credentials: 'omit',
      signal: options.signal,
    });
    let json = null;
    try {
      json = await r.json();
    } catch (_) {
      json = null;
    }
    if (r.status === 401 && state.me) {
      signOut('Your token is no longer accepted. Sign in again.');
    }
    if (!r.ok) throw new ApiError(r.status, json);
    return json;
  }

  function errorText(e) {
    if (e instanceof ApiError && e.body && e.body.hint) return `${e.message} (${e.body.hint})`;
    return e.message || String(e);
  }

  // === Sign-in ===

  async function signIn(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    try {
      state.me = await api('/v1/me');
    } catch (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      state.me = null;
      $('signin-error').textContent =
        e instanceof ApiError && e.status === 401 ? 'That token is not accepted.' : errorText(e);
      return;
    }
    $('token').value = '';
    $('signin-error').textContent = '';
    const me = state.me;
    $('whoami').textContent = `${me.identity} (${me.roles.length ? me.roles.join(', ') : 'no roles'})`;
    show('signin', false);
    show('nav', true);
    show('who', true);
    show('nav-sessions', me.is_auditor);
    show('verify', me.is_auditor);
    if (me.is_auditor) checkVerify();
    showView('approvals');
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.me = null;
    stopAll();
    for (const id of ['nav', 'who', 'approvals', 'sessions', 'timeline']) show(id, false);
    $('requests').replaceChildren();
    state.shownApprovals = null;
    $('whoami').textContent = '';
    $('sessions-body').replaceChildren();
    $('timeline-statements').replaceChildren();
    flash('');
    show('signin', true);
    $('signin-error').textContent = message || '';
    $('token').focus();
  }

  function stopAll() {
    clearInterval(state.approvalsTimer);
    state.approvalsTimer = null;
    stopFollow();
  }

  function showView(view) {
    stopAll();
    state.view = view;
    show('approvals', view === 'approvals');
    show('sessions', view === 'sessions');
    show('timeline', view === 'timeline');
    $('nav-approvals').setAttribute('aria-current', view === 'approvals' ? 'page' : 'false');
    $('nav-sessions').setAttribute('aria-current', view !== 'approvals' ? 'page' : 'false');
    if (view === 'approvals') {
      loadApprovals();
      state.approvalsTimer = setInterval(() => {
        // Don't redraw under someone typing a rejection reason.
        if (!state.rejecting) loadApprovals();
      }, APPROVALS_REFRESH_MS);
    } else if (view === 'sessions') {
      loadSessions();
    }
  }

  // === Approvals ===

  async function loadApprovals() {
    let answer;
    try {
      answer = await api('/v1/approvals?state=pending');
    } catch (e) {
      $('approvals-error').textContent = errorText(e);
      return;
    }
    $('approvals-error').textContent = '';
    const requests = answer.requests || [];
    show('approvals-empty', requests.length === 0);
    // Redraw only when something changed, so that a refresh never swaps a button out from
    // under a click or moves the keyboard focus; otherwise just tick the ages.
    const seen = JSON.stringify(requests);
    if (seen === state.shownApprovals) {
      for (const age of document.querySelectorAll('[data-testid=request-age]')) {
        age.textContent = `waiting ${ago(Number(age.dataset.created))}`;
      }
      return;
    }
    state.shownApprovals = seen;
    $('requests').replaceChildren(...requests.map(requestCard));
  }

  function params(values, masked) {
    if (!values.length) return null;
    return el(
      'div',
      { class: 'params', 'data-testid': 'request-params' },
      el('span', { class: 'label' }, 'Parameters'),
      el('ol', {}, values.map((v, i) => el('li', {}, el('code', {}, `$${i + 1} = ${v === null ? 'NULL' : v}`)))),
      masked ? el('span', { class: 'muted' }, 'Hidden: masks apply to you on these tables.') : null,
    );
  }

  function field(label, value, testid) {
    return [el('dt', {}, label), el('dd', { 'data-testid': testid }, value)];
  }

  function requestCard(r) {
    const st = r.statement;
    const card = el(
      'li',
      { class: 'card request', 'data-testid': 'request', 'data-request-id': r.id },
      el(
        'div',
        { class: 'request-head' },
        el('span', { class: 'badge class' }, st.class),
        el('strong', { 'data-testid': 'request-rule' }, r.rule),
        el(
          'span',
          { class: 'muted', 'data-testid': 'request-age', 'data-created': r.created_at.unix_ms },
          `waiting ${ago(r.created_at.unix_ms)}`,
        ),
      ),
      el('pre', { class: 'sql', 'data-testid': 'request-sql' }, st.sql),
      params(st.params, st.params_masked),
      el(
        'dl',
        { class: 'facts' },
        field('Requester', `${r.requester.identity} (${r.requester.roles.join(', ') || 'no roles'})`, 'request-requester'),
        field('Tables', st.tables.join(', ') || '-', 'request-tables'),
        field('Database', st.database, 'request-database'),
        field('Approvals', `${r.approvals} of ${r.needed} (approvers: ${r.approvers.join(', ')})`, 'request-approvals'),
        field('Request', `${r.id} · session ${r.origin.session} from ${r.origin.client_addr}`, 'request-id'),
        field('Expires', `${utc(r.expires_at)} UTC`, 'request-expires'),
      ),
    );
    const error = el('p', { class: 'error', role: 'alert', 'data-testid': 'request-error' });
    if (r.can_decide || r.can_reject) {
      const reason = el('input', {
        type: 'text',
        'aria-label': 'Reason for rejecting',
        placeholder: 'Why? The requester is shown this.',
        'data-testid': 'reject-reason',
      });
      const rejectForm = el(
        'form',
        { class: 'reject-form', hidden: true },
        reason,
        el('button', { type: 'submit', class: 'danger', 'data-testid': 'reject-confirm' }, 'Reject'),
        el('button', { type: 'button', class: 'cancel' }, 'Cancel'),
      );
      const approve = el('button', { type: 'button', class: 'primary', 'data-testid': 'approve' }, 'Approve');
      const reject = el('button', { type: 'button', class: 'danger', 'data-testid': 'reject' }, 'Reject…');
      approve.addEventListener('click', () => decide(r.id, 'approve', {}, error, [approve, reject]));
      reject.addEventListener('click', () => {
        state.rejecting = r.id;
        rejectForm.hidden = false;
        reason.focus();
      });
      rejectForm.querySelector('.cancel').addEventListener('click', () => {
        state.rejecting = null;
        rejectForm.hidden = true;
      });
      rejectForm.addEventListener('submit', (ev) => {
        ev.preventDefault();
        if (!reason.value.trim()) {
          error.textContent = 'Say why: the requester is shown the reason.';
          return;
        }
        decide(r.id, 'reject', { reason: reason.value }, error, [approve, reject]);
      });
      // After approving, an approver may still change their mind and reject: then only Reject.
      card.append(el('div', { class: 'actions' }, r.can_decide ? approve : null, reject), rejectForm);
      if (!r.can_decide) {
        card.append(el('p', { class: 'cannot', 'data-testid': 'cannot-decide' }, `You can't approve this: ${r.cannot_decide}.`));
      }
    } else {
      card.append(
        el('p', { class: 'cannot', 'data-testid': 'cannot-decide' }, `You can't decide this: ${r.cannot_decide || 'not allowed'}.`),
      );
    }
    card.append(error);
    return card;
  }

  async function decide(id, verb, body, error, buttons) {
    for (const b of buttons) b.disabled = true;
    try {
      const result = await api(`/v1/approvals/${encodeURIComponent(id)}/${verb}`, { method: 'POST', body });
      const done = {
        approved: 'approved: the statement runs now',
        rejected: 'rejected',
        pending: `approved (${result.approvals} of ${result.needed}); more approvals are needed`,
      };
      flash(`Request ${id} ${done[result.outcome] || result.outcome}.`);
      state.rejecting = null;
      state.shownApprovals = null;
      loadApprovals();
    } catch (e) {
      error.textContent = errorText(e);
      for (const b of buttons) b.disabled = false;
    }
  }

  // === Sessions ===

  function isoFromLocal(value) {
    if (!value) return '';
    const d = new Date(value);
    return Number.isNaN(d.getTime()) ? '' : d.toISOString();
  }

  async function loadSessions() {
    const form = new FormData($('filters'));
    const q = new URLSearchParams();
    const identity = (form.get('identity') || '').trim();
    if (identity) q.set('identity', identity);
    const since = isoFromLocal(form.get('since'));
    if (since) q.set('since', since);
    const until = isoFromLocal(form.get('until'));
    if (until) q.set('until', until);
    if (form.get('decision')) q.set('decision', form.get('decision'));
    let answer;
    try {
      answer = await api(`/v1/audit/sessions?${q}`);
    } catch (e) {
      $('sessions-error').textContent = errorText(e);
      $('sessions-body').replaceChildren();
      return;
    }
    $('sessions-error').textContent = '';
    const rows = (answer.sessions || []).slice().reverse().map((s) => {
      const open = el('button', { type: 'button', class: 'link', 'data-testid': 'open-session' }, s.id);
      open.addEventListener('click', () => openSession(s.id));
      return el(
        'tr',
        { 'data-testid': 'session-row', 'data-session-id': s.id, 'data-identity': s.identity },
        el('td', {}, open),
        el('td', {}, s.identity),
        el('td', {}, utc(s.started)),
        el('td', {}, s.ended ? utc(s.ended) : el('span', { class: 'badge live' }, 'open')),
        el('td', { class: 'num' }, s.statements),
        el('td', { class: 'num' }, s.denials),
        el('td', {}, s.client_addr),
        el('td', {}, s.database),
      );
    });
    if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: 8, class: 'muted' }, 'No sessions match.')));
    $('sessions-body').replaceChildren(...rows);
  }

  // === Timeline ===

  async function openSession(id) {
    showView('timeline');
    state.session = id;
    $('timeline-title').textContent = `Session ${id}`;
    $('timeline-meta').textContent = '';
    $('timeline-end').textContent = '';
    $('timeline-statements').replaceChildren();
    $('timeline-events').replaceChildren();
    $('follow').checked = false;
    try {
      renderTimeline(await api(`/v1/audit/sessions/${encodeURIComponent(id)}`));
      $('timeline-error').textContent = '';
    } catch (e) {
      $('timeline-error').textContent = errorText(e);
    }
  }

  function eventText(e) {
    return `${utc(e.time)} ${e.event} by ${e.actor}${e.reason ? `: ${e.reason}` : ''}`;
  }

  function outcomeText(o) {
    if (!o) return 'running…';
    const what = o.sqlstate ? `ERROR ${o.sqlstate}: ${o.message || ''}` : o.command_tag || 'done';
    const rows = o.rows === null || o.rows === undefined ? '' : ` · ${o.rows} rows`;
    return `${what}${rows} · ${o.bytes} bytes · ${(o.duration_us / 1000).toFixed(1)} ms`;
  }

  function rowsTable(r) {
    if (!r) return null;
    return el(
      'div',
      { class: 'rows' },
      el(
        'table',
        { 'data-testid': 'statement-rows' },
        el('thead', {}, el('tr', {}, r.columns.map((c) => el('th', { scope: 'col' }, c)))),
        el('tbody', {}, r.rows.map((row) => el('tr', {}, row.map((c) => el('td', {}, c === null ? 'NULL' : c))))),
      ),
      r.truncated ? el('p', { class: 'muted' }, 'More rows were returned; the capture stopped at its size limit.') : null,
    );
  }

  function statementItem(s) {
    let approval = null;
    if (s.approval_request) {
      const by = s.approvers.length ? `, approved by ${s.approvers.join(', ')}` : '';
      approval = el(
        'div',
        { class: 'approval', 'data-testid': 'statement-approval' },
        `Approval request ${s.approval_request}${by}`,
        el('ul', {}, s.approval_events.map((e) => el('li', {}, eventText(e)))),
      );
    }
    return el(
      'li',
      { class: 'card statement', 'data-testid': 'timeline-statement', 'data-decision': s.decision, 'data-seq': s.seq },
      el(
        'div',
        { class: 'request-head' },
        el('span', { class: 'muted' }, `#${s.seq} · ${utc(s.time)}`),
        el('span', { class: `badge decision-${s.decision}`, 'data-testid': 'statement-decision' }, s.decision),
        el('span', { class: 'muted' }, s.rule ? `rule ${s.rule}` : ''),
        el('span', { class: 'badge class' }, s.class),
      ),
      el('pre', { class: 'sql', 'data-testid': 'statement-sql' }, s.sql),
      params(s.params, false),
      approval,
      s.masked_columns.length ? el('p', { class: 'muted' }, `Masked: ${s.masked_columns.join(', ')}`) : null,
      el('p', { class: s.outcome && s.outcome.sqlstate ? 'outcome error' : 'outcome', 'data-testid': 'statement-outcome' }, outcomeText(s.outcome)),
      rowsTable(s.rows),
    );
  }

  function renderTimeline(t) {
    if (t.start) {
      const st = t.start;
      $('timeline-meta').textContent =
        `${st.identity} (${st.roles.join(', ') || 'no roles'}) from ${st.client_addr}${st.tls ? ' over TLS' : ''}, ` +
        `database ${st.database} as ${st.upstream_user}` +
        `${st.application_name ? `, application ${st.application_name}` : ''}; started ${utc(st.time)} UTC`;
    }
    $('timeline-statements').replaceChildren(...t.statements.map(statementItem));
    $('timeline-events').replaceChildren(
      ...t.approval_events.map((e) => el('li', {}, `Approval request ${e.request}: ${eventText(e)}`)),
    );
    show('timeline-events-box', t.approval_events.length > 0);
    $('timeline-end').textContent = t.end ? `Ended ${utc(t.end.time)} UTC: ${t.end.reason}` : 'The session is open.';
    show('follow-label', !t.end);
    state.lastSeq = t.last_seq;
    if (t.end) stopFollow();
  }

  function stopFollow() {
    if (state.followAbort) state.followAbort.abort();
    state.followAbort = null;
  }

  // Long-polls the session: each answer comes when it has a new record (or after a while).
  async function follow() {
    stopFollow();
    const abort = new AbortController();
    state.followAbort = abort;
    const id = state.session;
    while (!abort.signal.aborted) {
      try {
        const t = await api(
          `/v1/audit/sessions/${encodeURIComponent(id)}?after=${state.lastSeq}&wait=${FOLLOW_WAIT_S}`,
          { signal: abort.signal },
        );
        if (abort.signal.aborted) return;
        renderTimeline(t);
        $('timeline-error').textContent = '';
        if (t.end) {
          $('follow').checked = false;
          return;
        }
      } catch (e) {
        if (abort.signal.aborted) return;
        $('timeline-error').textContent = errorText(e);
        await new Promise((resolve) => setTimeout(resolve, 2000));
      }
    }
  }

  // === Audit log verification ===

  async function checkVerify() {
    const badge = $('verify');
    if (!state.me.audit_enabled) {
      badge.textContent = 'Audit log off';
      badge.className = 'badge';
      return;
    }
    badge.textContent = 'Audit log: checking…';
    badge.className = 'badge';
    try {
      const v = await api('/v1/audit/verify');
      if (v.status === 'ok') {
        badge.textContent = `Audit log verified: ${v.records} records`;
        badge.className = 'badge ok';
      } else {
        const b = v.first_break;
        badge.textContent = `Audit log BROKEN: ${b.kind} in ${b.file}${b.seq ? ` at record ${b.seq}` : ''}`;
        badge.className = 'badge bad';
      }
      badge.dataset.status = v.status;
      badge.title = [verifySummary(v), ...v.notes].join('\n');
    } catch (e) {
      badge.textContent = `Audit log: ${errorText(e)}`;
      badge.className = 'badge bad';
    }
  }

  function verifySummary(v) {
    const head = `${v.files} files, ${v.records} records checked at ${utc(v.checked_at)} UTC`;
    return v.first_break ? `${head}; ${v.first_break.detail}` : `${head}. Click to check again.`;
  }

  // === Wiring ===

  document.addEventListener('DOMContentLoaded', () => {
    $('signin-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const token = $('token').value.trim();
      if (token) signIn(token);
    });
    $('sign-out').addEventListener('click', () => signOut(''));
    $('nav-approvals').addEventListener('click', () => showView('approvals'));
    $('nav-sessions').addEventListener('click', () => showView('sessions'));
    $('back').addEventListener('click', () => showView('sessions'));
    $('verify').addEventListener('click', checkVerify);
    $('filters').addEventListener('submit', (ev) => {
      ev.preventDefault();
      loadSessions();
    });
    $('follow').addEventListener('change', () => {
      if ($('follow').checked) follow();
      else stopFollow();
    });
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) signIn(saved);
    else $('token').focus();
  });
})();
